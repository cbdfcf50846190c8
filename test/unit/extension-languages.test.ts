import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commandFor, containerPathOf, shebang, shellQuote } from '../../extension/commands/languages';

const cases: Array<[string, string, string | undefined, string | undefined]> = [
  ['python', '/workspaces/p/a.py', undefined, 'python3 /workspaces/p/a.py'],
  ['javascript', '/workspaces/p/a.js', undefined, 'node /workspaces/p/a.js'],
  ['shellscript', '/workspaces/p/hello.sh', '#!/bin/sh', '/bin/sh /workspaces/p/hello.sh'],
  ['shellscript', '/workspaces/p/hello.sh', 'echo hi', 'sh /workspaces/p/hello.sh'],
  ['shellscript', '/workspaces/p/b.sh', '#!/usr/bin/env bash', '/usr/bin/env bash /workspaces/p/b.sh'],
  ['go', '/workspaces/p/main.go', undefined, 'go run /workspaces/p/main.go'],
  ['ruby', '/w/x.rb', undefined, 'ruby /w/x.rb'],
  ['perl', '/w/x.pl', undefined, 'perl /w/x.pl'],
  ['c', '/w/m.c', undefined, 'cc -o /tmp/m /w/m.c && /tmp/m'],
  ['plaintext', '/w/notes.txt', undefined, undefined],
  ['plaintext', '/w/tool', '#!/usr/bin/python3', '/usr/bin/python3 /w/tool'],
  // A language with a default ignores a shebang: python's own interpreter line is redundant.
  ['python', '/w/a.py', '#!/usr/bin/env python2', 'python3 /w/a.py'],
];
for (const [languageId, containerPath, firstLine, expected] of cases) {
  test(`${languageId} file ${containerPath}${firstLine ? ` (${firstLine})` : ''} runs as ${expected ?? 'nothing known'}`, () => {
    assert.equal(commandFor({ languageId, containerPath, firstLine }), expected);
  });
}

test('capsa.runCommands overrides the defaults and gets all variables, quoted', () => {
  const cmd = commandFor(
    { languageId: 'python', containerPath: "/workspaces/my proj/it's.py" },
    { python: 'cd ${fileDirname} && python3 -u ${fileBasename} # ${fileBasenameNoExtension} ${unknown}' },
  );
  assert.equal(cmd, `cd '/workspaces/my proj' && python3 -u 'it'\\''s.py' # 'it'\\''s' \${unknown}`);
});

test('shellQuote leaves plain words alone and quotes the rest', () => {
  assert.equal(shellQuote('/a/b-c_d.e'), '/a/b-c_d.e');
  assert.equal(shellQuote(''), "''");
  assert.equal(shellQuote('a b'), "'a b'");
  assert.equal(shellQuote('$(rm -rf /)'), "'$(rm -rf /)'");
});

test('shebang reads the interpreter line', () => {
  assert.equal(shebang('#!/bin/sh'), '/bin/sh');
  assert.equal(shebang('#! /usr/bin/env  node  '), '/usr/bin/env  node');
  assert.equal(shebang('echo'), undefined);
});

test('host paths map into the workspace mount; outside paths do not', () => {
  assert.equal(containerPathOf('/home/u/proj/src/a.py', '/home/u/proj', '/workspaces/proj'), '/workspaces/proj/src/a.py');
  assert.equal(containerPathOf('/home/u/proj', '/home/u/proj/', '/workspaces/proj/'), '/workspaces/proj');
  assert.equal(containerPathOf('/home/u/project2/a.py', '/home/u/proj', '/workspaces/proj'), undefined);
});
