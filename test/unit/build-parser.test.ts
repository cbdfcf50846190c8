/**
 * The Dockerfile parser against expected ASTs, case by case as BuildKit's
 * parser splits them: directives, continuations, comments inside them,
 * heredocs, the JSON and shell forms, flags, every instruction's split, and
 * the errors (with file and line).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile, type Node } from '../../server/build/dockerfile/parser';
import { DockerfileError } from '../../server/build/errors';

type Ast = { cmd: string; flags?: string[]; args: string[]; json?: true; heredocs?: { name: string; content: string; expand?: false; chomp?: true; fd?: number }[]; next?: Ast; lines?: [number, number] };

function ast(n: Node): Ast {
  const a: Ast = { cmd: n.cmd, args: n.args };
  if (n.flags.length) a.flags = n.flags;
  if (n.json) a.json = true;
  if (n.heredocs.length) {
    a.heredocs = n.heredocs.map((h) => ({ name: h.name, content: h.content, ...(h.expand ? {} : { expand: false as const }), ...(h.chomp ? { chomp: true as const } : {}), ...(h.fd ? { fd: h.fd } : {}) }));
  }
  if (n.next) a.next = ast(n.next);
  return a;
}

const CASES: { name: string; src: string; want: Ast[]; escape?: string }[] = [
  { name: 'FROM plain', src: 'FROM busybox', want: [{ cmd: 'from', args: ['busybox'] }] },
  { name: 'FROM AS name, --platform flag', src: 'FROM --platform=$BUILDPLATFORM golang:1.22 AS build', want: [{ cmd: 'from', flags: ['--platform=$BUILDPLATFORM'], args: ['golang:1.22', 'AS', 'build'] }] },
  { name: 'instruction names are case-insensitive', src: 'from a\nRuN echo hi', want: [{ cmd: 'from', args: ['a'] }, { cmd: 'run', args: ['echo hi'] }] },
  { name: 'ARG before FROM', src: 'ARG V=1\nFROM a:$V', want: [{ cmd: 'arg', args: ['V=1'] }, { cmd: 'from', args: ['a:$V'] }] },
  { name: 'ARG several, quoted default kept raw', src: 'ARG A B="x y" C=', want: [{ cmd: 'arg', args: ['A', 'B="x y"', 'C='] }] },
  { name: 'RUN shell form is one string', src: 'RUN  apt-get update && apt-get install -y x  ', want: [{ cmd: 'run', args: ['apt-get update && apt-get install -y x'] }] },
  { name: 'RUN exec form', src: 'RUN ["echo", "a b"]', want: [{ cmd: 'run', args: ['echo', 'a b'], json: true }] },
  { name: 'JSON form with escapes', src: 'CMD ["sh", "-c", "echo \\"q\\" \\\\ \\u00e9"]', want: [{ cmd: 'cmd', args: ['sh', '-c', 'echo "q" \\ é'], json: true }] },
  { name: 'invalid JSON falls back to the shell form', src: "CMD ['single', 'quotes']", want: [{ cmd: 'cmd', args: ["['single', 'quotes']"] }] },
  { name: 'empty JSON array', src: 'CMD []', want: [{ cmd: 'cmd', args: [], json: true }] },
  { name: 'line continuation inside JSON', src: 'ENTRYPOINT ["a", \\\n  "b"]', want: [{ cmd: 'entrypoint', args: ['a', 'b'], json: true }] },
  { name: 'continuation joins lines keeping the next line\'s indentation', src: 'RUN a \\\n    b', want: [{ cmd: 'run', args: ['a     b'] }] },
  { name: 'continuation with trailing blanks after the backslash', src: 'RUN a \\  \t\n b', want: [{ cmd: 'run', args: ['a  b'] }] },
  { name: 'comment lines inside a continuation are dropped', src: 'RUN a \\\n# comment\n  # indented comment\n && b', want: [{ cmd: 'run', args: ['a  && b'] }] },
  { name: 'empty lines inside a continuation are dropped', src: 'RUN a \\\n\n   \n b', want: [{ cmd: 'run', args: ['a  b'] }] },
  { name: 'comments and blank lines between instructions', src: '# c\n\nFROM a\n   # c2\n\nRUN b', want: [{ cmd: 'from', args: ['a'] }, { cmd: 'run', args: ['b'] }] },
  { name: '# inside an instruction is not a comment', src: 'RUN echo a # not a comment', want: [{ cmd: 'run', args: ['echo a # not a comment'] }] },
  { name: 'escape=` directive: backtick continues, backslash is literal', src: '# escape=`\nFROM w\nRUN dir C:\\ `\n  && echo x', escape: '`', want: [{ cmd: 'from', args: ['w'] }, { cmd: 'run', args: ['dir C:\\   && echo x'] }] },
  { name: 'escape directive after a comment is a comment', src: '# hello\n# escape=`\nRUN a `\nRUN b', want: [{ cmd: 'run', args: ['a `'] }, { cmd: 'run', args: ['b'] }] },
  { name: 'syntax and check directives are read and ignored', src: '# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a', want: [{ cmd: 'from', args: ['a'] }] },
  { name: 'directive names and spacing are loose', src: '#  ESCAPE = `\nRUN a `\n b', escape: '`', want: [{ cmd: 'run', args: ['a  b'] }] },
  { name: 'CRLF line endings', src: 'FROM a\r\nRUN b \\\r\n c\r\nENV K=v\r\n', want: [{ cmd: 'from', args: ['a'] }, { cmd: 'run', args: ['b  c'] }, { cmd: 'env', args: ['K', 'v'] }] },
  { name: 'a UTF-8 BOM is skipped', src: '\ufeffFROM a', want: [{ cmd: 'from', args: ['a'] }] },
  { name: 'heredoc RUN', src: 'RUN <<EOF\necho a\necho b\nEOF\nRUN c', want: [{ cmd: 'run', args: ['<<EOF'], heredocs: [{ name: 'EOF', content: 'echo a\necho b\n' }] }, { cmd: 'run', args: ['c'] }] },
  { name: 'heredoc <<- keeps tabs in content (stripped later) and accepts a tabbed terminator', src: 'RUN <<-EOT\n\techo a\n\tEOT', want: [{ cmd: 'run', args: ['<<-EOT'], heredocs: [{ name: 'EOT', content: '\techo a\n', chomp: true }] }] },
  { name: 'quoted heredoc delimiter disables expansion', src: "RUN <<'EOF'\necho $HOME\nEOF", want: [{ cmd: 'run', args: ["<<'EOF'"], heredocs: [{ name: 'EOF', content: 'echo $HOME\n', expand: false }] }] },
  { name: 'double-quoted heredoc delimiter', src: 'COPY <<"X" /f\n$A\nX', want: [{ cmd: 'copy', args: ['<<"X"', '/f'], heredocs: [{ name: 'X', content: '$A\n', expand: false }] }] },
  { name: 'several heredocs on one line', src: 'RUN <<A cat && cat <<B\na\nA\nb\nB', want: [{ cmd: 'run', args: ['<<A cat && cat <<B'], heredocs: [{ name: 'A', content: 'a\n' }, { name: 'B', content: 'b\n' }] }] },
  { name: 'heredoc with a file descriptor and redirect', src: 'RUN cat 3<<EOF > /out\nx\nEOF', want: [{ cmd: 'run', args: ['cat 3<<EOF > /out'], heredocs: [{ name: 'EOF', content: 'x\n', fd: 3 }] }] },
  { name: 'COPY heredoc to a destination', src: 'COPY <<EOF /etc/conf\nk=v\nEOF', want: [{ cmd: 'copy', args: ['<<EOF', '/etc/conf'], heredocs: [{ name: 'EOF', content: 'k=v\n' }] }] },
  { name: 'heredoc body keeps blank lines and # lines', src: 'RUN <<EOF\n# not a comment\n\nx \\\nEOF', want: [{ cmd: 'run', args: ['<<EOF'], heredocs: [{ name: 'EOF', content: '# not a comment\n\nx \\\n' }] }] },
  { name: 'RUN exec form never opens a heredoc', src: 'RUN ["cat", "<<EOF"]\nEOF', want: [] },
  { name: '<<EOF inside quotes is not a heredoc', src: 'RUN echo "<<EOF"', want: [{ cmd: 'run', args: ['echo "<<EOF"'] }] },
  { name: 'COPY flags and sources', src: 'COPY --from=build --chown=1000:1000 --chmod=755 --link a b /dst/', want: [{ cmd: 'copy', flags: ['--from=build', '--chown=1000:1000', '--chmod=755', '--link'], args: ['a', 'b', '/dst/'] }] },
  { name: 'quoted flag values lose their quotes', src: 'COPY --chown="a b" x y', want: [{ cmd: 'copy', flags: ['--chown=a b'], args: ['x', 'y'] }] },
  { name: 'COPY JSON form keeps spaces', src: 'COPY ["a b", "/c d/"]', want: [{ cmd: 'copy', args: ['a b', '/c d/'], json: true }] },
  { name: 'RUN --mount flags', src: 'RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok --network=none make', want: [{ cmd: 'run', flags: ['--mount=type=cache,target=/root/.cache', '--mount=type=secret,id=tok', '--network=none'], args: ['make'] }] },
  { name: 'ENV key value (old form): the rest of the line is the value', src: 'ENV PATH /usr/bin:/bin  extra', want: [{ cmd: 'env', args: ['PATH', '/usr/bin:/bin  extra'] }] },
  { name: 'ENV k=v pairs with quotes and escapes kept raw', src: 'ENV A=1 B="two words" C=three\\ words D', want: [] },
  { name: 'ENV k=v pairs', src: 'ENV A=1 B="two words" C=three\\ words', want: [{ cmd: 'env', args: ['A', '1', 'B', '"two words"', 'C', 'three\\ words'] }] },
  { name: 'LABEL several, quoted', src: 'LABEL "com.example.vendor"="ACME" version=1.0 description="a \\"b\\""', want: [{ cmd: 'label', args: ['"com.example.vendor"', '"ACME"', 'version', '1.0', 'description', '"a \\"b\\""'] }] },
  { name: 'LABEL old form', src: 'LABEL maintainer someone else', want: [{ cmd: 'label', args: ['maintainer', 'someone else'] }] },
  { name: 'MAINTAINER', src: 'MAINTAINER Jane <j@x>', want: [{ cmd: 'maintainer', args: ['Jane <j@x>'] }] },
  { name: 'EXPOSE ports, protocols, ranges', src: 'EXPOSE 80 443/tcp 53/udp 8000-8010', want: [{ cmd: 'expose', args: ['80', '443/tcp', '53/udp', '8000-8010'] }] },
  { name: 'ADD with --checksum', src: 'ADD --checksum=sha256:abc https://x/y.tgz /z', want: [{ cmd: 'add', flags: ['--checksum=sha256:abc'], args: ['https://x/y.tgz', '/z'] }] },
  { name: 'VOLUME JSON', src: 'VOLUME ["/a", "/b"]', want: [{ cmd: 'volume', args: ['/a', '/b'], json: true }] },
  { name: 'VOLUME list', src: 'VOLUME /a /b', want: [{ cmd: 'volume', args: ['/a', '/b'] }] },
  { name: 'USER, WORKDIR, STOPSIGNAL keep the text', src: 'USER app:app\nWORKDIR /my dir\nSTOPSIGNAL SIGTERM', want: [{ cmd: 'user', args: ['app:app'] }, { cmd: 'workdir', args: ['/my dir'] }, { cmd: 'stopsignal', args: ['SIGTERM'] }] },
  { name: 'SHELL JSON', src: 'SHELL ["powershell", "-command"]', want: [{ cmd: 'shell', args: ['powershell', '-command'], json: true }] },
  { name: 'HEALTHCHECK NONE', src: 'HEALTHCHECK NONE', want: [{ cmd: 'healthcheck', args: ['NONE'] }] },
  { name: 'HEALTHCHECK CMD shell with options', src: 'HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1', want: [{ cmd: 'healthcheck', flags: ['--interval=5m', '--timeout=3s', '--retries=3'], args: ['CMD', 'curl -f http://localhost/ || exit 1'] }] },
  { name: 'HEALTHCHECK CMD exec', src: 'HEALTHCHECK CMD ["/bin/check", "-q"]', want: [{ cmd: 'healthcheck', args: ['CMD', '/bin/check', '-q'], json: true }] },
  { name: 'ONBUILD nests its trigger', src: 'ONBUILD RUN make', want: [{ cmd: 'onbuild', args: ['RUN make'], next: { cmd: 'run', args: ['make'] } }] },
  { name: 'ONBUILD COPY with flags', src: 'ONBUILD COPY --chown=1 . /app', want: [{ cmd: 'onbuild', args: ['COPY --chown=1 . /app'], next: { cmd: 'copy', flags: ['--chown=1'], args: ['.', '/app'] } }] },
  { name: 'a bare -- ends the flags', src: 'COPY --link -- --weird /d', want: [{ cmd: 'copy', flags: ['--link'], args: ['--weird', '/d'] }] },
  { name: 'an escaped escape token at the end does not continue the line', src: 'RUN echo a\\\\\nRUN b', want: [{ cmd: 'run', args: ['echo a\\\\'] }, { cmd: 'run', args: ['b'] }] },
  { name: 'a line of only the escape token continues', src: 'RUN a \\\n\\\n b', want: [{ cmd: 'run', args: ['a  b'] }] },
  { name: 'CRLF heredoc bodies keep their line endings', src: 'RUN <<EOF\r\necho a\r\nEOF\r\n', want: [{ cmd: 'run', args: ['<<EOF'], heredocs: [{ name: 'EOF', content: 'echo a\r\n' }] }] },
  { name: 'ONBUILD RUN with a heredoc', src: 'ONBUILD RUN <<EOF\nmake\nEOF', want: [{ cmd: 'onbuild', args: ['RUN <<EOF'], heredocs: [{ name: 'EOF', content: 'make\n' }], next: { cmd: 'run', args: ['<<EOF'] } }] },
  { name: 'heredoc delimiter with $ stays as written', src: 'RUN <<$EOF\nx\n$EOF', want: [{ cmd: 'run', args: ['<<$EOF'], heredocs: [{ name: '$EOF', content: 'x\n' }] }] },
  { name: 'CMD with no arguments', src: 'CMD', want: [{ cmd: 'cmd', args: [] }] },
];

for (const c of CASES) {
  if (c.want.length === 0) continue;
  test(`parser: ${c.name}`, () => {
    const r = parseDockerfile(c.src);
    assert.deepEqual(r.nodes.map(ast), c.want);
    if (c.escape) assert.equal(r.escapeToken, c.escape);
  });
}

test('parser: the table has at least 40 AST cases', () => {
  assert.ok(CASES.filter((c) => c.want.length > 0).length >= 40);
});

test('parser: lines of multi-line instructions and heredocs are recorded', () => {
  const r = parseDockerfile('FROM a\nRUN b \\\n c\nRUN <<EOF\nx\nEOF\nUSER u');
  assert.deepEqual(r.nodes.map((n) => [n.startLine, n.endLine]), [[1, 1], [2, 3], [4, 6], [7, 7]]);
});

test('parser: an empty continuation line is a warning with the instruction\'s line', () => {
  assert.deepEqual(parseDockerfile('FROM a\nRUN a \\\n\n b').warnings, [{ line: 2, message: 'empty continuation line' }]);
});

test('parser: directives are recorded, lower case', () => {
  assert.deepEqual(parseDockerfile('# syntax=docker/dockerfile:1.7\n# Escape=\\\nFROM a').directives, { syntax: 'docker/dockerfile:1.7', escape: '\\' });
});

const ERRORS: { name: string; src: string; message: string }[] = [
  { name: 'unknown instruction names file and line', src: 'FROM a\n\n\n\n\n\nFOO bar', message: 'Dockerfile:7: unknown instruction: FOO' },
  { name: 'ENV in the pairs form with a word lacking =', src: 'ENV A=1 B', message: `Dockerfile:1: Syntax error - can't find = in "B". Must be of the form: name=value` },
  { name: 'ENV with one word', src: 'ENV A', message: 'Dockerfile:1: ENV must have two arguments' },
  { name: 'a second escape directive', src: '# escape=\\\n# escape=`\nFROM a', message: 'Dockerfile:2: only one escape parser directive can be used' },
  { name: 'a bad escape token', src: '# escape=x\nFROM a', message: "Dockerfile:1: invalid escape token 'x' does not match ` or \\" },
  { name: 'an unterminated heredoc', src: 'FROM a\nRUN <<EOF\necho', message: 'Dockerfile:2: unterminated heredoc EOF' },
  { name: 'a JSON array of numbers', src: 'CMD [1, 2]', message: 'Dockerfile:1: the JSON array may hold only strings' },
  { name: 'binary garbage', src: '\x7fELF\x02\x01\x01garbage', message: 'Dockerfile:1: unknown instruction: \x7fELF\x02\x01\x01garbage' },
  { name: 'a NUL byte', src: 'FROM a\nRUN \0', message: 'Dockerfile:2: the file holds a NUL byte: it is not a text Dockerfile' },
  { name: 'ONBUILD without a trigger', src: 'ONBUILD', message: 'Dockerfile:1: ONBUILD requires at least one argument' },
];

for (const c of ERRORS) {
  test(`parser refuses ${c.name}`, () => {
    assert.throws(() => parseDockerfile(c.src), (err: unknown) => err instanceof DockerfileError && err.code === 'E_DOCKERFILE' && err.message === c.message);
  });
}

test('parser: ENV in the pairs form with a trailing bare word is refused (the case kept out of the AST table)', () => {
  assert.throws(() => parseDockerfile(CASES.find((c) => c.name.startsWith('ENV k=v pairs with quotes'))!.src), /can't find = in "D"/);
});

test('parser: RUN exec form with a following EOF line leaves EOF as an unknown instruction', () => {
  assert.throws(() => parseDockerfile('RUN ["cat", "<<EOF"]\nEOF'), /Dockerfile:2: unknown instruction: EOF/);
});

test('parser: a 4 MiB Dockerfile of real instructions parses in bounded time; one of more instructions or bytes than the limits is refused', () => {
  const line = `RUN echo "${'a long command line to fill the file '.repeat(110)}" && true\n`;
  const big = 'FROM a\n' + line.repeat(Math.min(999, Math.floor((4 * 1024 * 1024 - 10) / line.length)));
  const t0 = Date.now();
  const r = parseDockerfile(big);
  assert.ok(r.nodes.length > 900 && Buffer.byteLength(big) > 3.5 * 1024 * 1024, `${r.nodes.length} instructions, ${Buffer.byteLength(big)} bytes`);
  assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
  const many = 'FROM a\n' + 'RUN true\n'.repeat(50000);
  assert.throws(() => parseDockerfile(many), /Dockerfile:1001: more than the Dockerfile limit of 1000 instructions/);
  const huge = Buffer.alloc(10 * 1024 * 1024, 'a');
  const t1 = Date.now();
  assert.throws(() => parseDockerfile(huge), (err: unknown) => (err as { code?: string }).code === 'E_LIMIT_EXCEEDED' && /Dockerfile limit \(4 MiB\)/.test((err as Error).message));
  assert.ok(Date.now() - t1 < 1000);
});

test('parser: a line continued 100,000 times is one instruction', () => {
  const src = 'RUN a' + ' \\\n b'.repeat(100000);
  const r = parseDockerfile(src);
  assert.equal(r.nodes.length, 1);
  assert.equal(r.nodes[0].endLine, 100001);
});

test('parser and planner: random bytes and random Dockerfile-ish text end in a DockerfileError or a plan, never another failure', async () => {
  const { loadDockerfile } = await import('../../server/build/stages');
  const { graphFor, planBuild } = await import('../../server/build/expand');
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = ['FROM a', 'FROM a AS b', 'RUN x', 'RUN <<EOF', 'EOF', 'COPY --from=b / /', 'ENV A=$B', 'ARG B=${C:-d}', 'LABEL "x"=\'y\'', '\\', '`', '"', "'", '${', '}', '[', ']', '# escape=`', '\r', '\t', ' ', 'ONBUILD', 'HEALTHCHECK', '--mount=type=cache', '\n', '\n', '\n'];
  const platform = { os: 'linux', architecture: 'amd64' };
  for (let i = 0; i < 500; i++) {
    const input = i % 2 === 0
      ? Buffer.from(Array.from({ length: rnd(300) }, () => rnd(256)))
      : Array.from({ length: rnd(40) }, () => pieces[rnd(pieces.length)]).join(rnd(2) ? ' ' : '\n');
    try {
      const df = loadDockerfile(input);
      const opts = { platform, buildPlatform: platform };
      const g = graphFor(df, opts);
      planBuild(df, opts, g, new Map(g.images.map((r) => [r, { digest: 'sha256:' + '0'.repeat(64), config: {} }])));
    } catch (err) {
      assert.ok(err instanceof DockerfileError || (err as { code?: string }).code === 'E_BUILD_CONTEXT', `input ${JSON.stringify(input.toString())}: ${(err as Error).stack}`);
    }
  }
});
