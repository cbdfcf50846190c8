/**
 * .dockerignore: moby/patternmatcher's own match table, exceptions, the
 * reading rules of buildkit's dockerignore.ReadAll, and which ignore file
 * applies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ignoreFileFor, PatternMatcher, readDockerignore } from '../../server/build/dockerignore';

// pattern, path, matches — patternmatcher_test.go TestMatches.
const MATCHES: [string, string, boolean][] = [
  ['**', 'file', true],
  ['**', 'file/', true],
  ['**', '/', true],
  ['**/', 'file', true],
  ['**/', 'file/', true],
  ['**/', '/', true],
  ['**', 'dir/file', true],
  ['**/', 'dir/file', true],
  ['**', 'dir/file/', true],
  ['**/', 'dir/file/', true],
  ['**/**', 'dir/file', true],
  ['**/**', 'dir/file/', true],
  ['dir/**', 'dir/file', true],
  ['dir/**', 'dir/file/', true],
  ['dir/**', 'dir/dir2/file', true],
  ['dir/**', 'dir/dir2/file/', true],
  ['**/dir', 'dir', true],
  ['**/dir', 'dir/file', true],
  ['**/dir2/*', 'dir/dir2/file', true],
  ['**/dir2/*', 'dir/dir2/file/', true],
  ['**/dir2/**', 'dir/dir2/dir3/file', true],
  ['**/dir2/**', 'dir/dir2/dir3/file/', true],
  ['**file', 'file', true],
  ['**file', 'dir/file', true],
  ['**/file', 'dir/file', true],
  ['**file', 'dir/dir/file', true],
  ['**/file', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file.txt', true],
  ['**/file*txt', 'dir/dir/file.txt', true],
  ['**/file*.txt', 'dir/dir/file.txt', true],
  ['**/file*.txt*', 'dir/dir/file.txt', true],
  ['**/**/*.txt', 'dir/dir/file.txt', true],
  ['**/**/*.txt2', 'dir/dir/file.txt', false],
  ['**/*.txt', 'file.txt', true],
  ['**/**/*.txt', 'file.txt', true],
  ['a**/*.txt', 'a/file.txt', true],
  ['a**/*.txt', 'a/dir/file.txt', true],
  ['a**/*.txt', 'a/dir/dir/file.txt', true],
  ['a/*.txt', 'a/dir/file.txt', false],
  ['a/*.txt', 'a/file.txt', true],
  ['a/*.txt**', 'a/file.txt', true],
  ['a[b-d]e', 'ae', false],
  ['a[b-d]e', 'ace', true],
  ['a[b-d]e', 'aae', false],
  ['a[^b-d]e', 'aze', true],
  ['.*', '.foo', true],
  ['.*', 'foo', false],
  ['abc.def', 'abcdef', false],
  ['abc.def', 'abc.def', true],
  ['abc.def', 'abcZdef', false],
  ['abc?def', 'abcZdef', true],
  ['abc?def', 'abcdef', false],
  ['a\\\\', 'a\\', true],
  ['**/foo/bar', 'foo/bar', true],
  ['**/foo/bar', 'dir/foo/bar', true],
  ['**/foo/bar', 'dir/dir2/foo/bar', true],
  ['abc/**', 'abc', false],
  ['abc/**', 'abc/def', true],
  ['abc/**', 'abc/def/ghi', true],
  ['**/.foo', '.foo', true],
  ['**/.foo', 'bar.foo', false],
  ['a(b)c/def', 'a(b)c/def', true],
  ['a(b)c/def', 'a(b)c/xyz', false],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', true],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  // Docker's documented rules: a pattern matches at the root only, unless it says **.
  ['*.log', 'a.log', true],
  ['*.log', 'sub/a.log', false],
  ['**/*.log', 'sub/deep/a.log', true],
  ['*/temp*', 'somedir/temporary.txt', true],
  ['*/temp*', 'temp', false],
  ['*/*/temp*', 'somedir/subdir/temporary.txt', true],
  ['temp?', 'tempa', true],
  // A pattern that matches a directory excludes what is under it.
  ['node_modules', 'node_modules/x/index.js', true],
  ['build/', 'build/out.o', true],
];

for (const [pattern, p, want] of MATCHES) {
  test(`dockerignore: ${JSON.stringify(pattern)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(p)}`, () => {
    assert.equal(new PatternMatcher([pattern]).matches(p), want);
  });
}

test('dockerignore: exceptions re-include, and the last matching pattern decides', () => {
  const m = new PatternMatcher(['docs', '!docs/README.md']);
  assert.equal(m.matches('docs/README.md'), false);
  assert.equal(m.matches('docs/other.md'), true);
  assert.equal(m.hasExclusions, true);
  const d = new PatternMatcher(['*.md', '!README*.md', 'README-secret.md']);
  assert.equal(d.matches('README.md'), false);
  assert.equal(d.matches('README-secret.md'), true);
  assert.equal(d.matches('CHANGES.md'), true);
  const all = new PatternMatcher(['**', '!src', 'src/**/*.tmp']);
  assert.equal(all.matches('src/a.ts'), false);
  assert.equal(all.matches('src/x/y.tmp'), true);
  assert.equal(all.matches('Dockerfile'), true);
});

test('dockerignore: the file is read as ReadAll reads it', () => {
  const text = '\ufeff# comment\n  # not a comment: trimmed after the check\n\n/abs/path\n./rel/../x/\n  spaced  \n! neg\n**/*.tmp\r\n';
  assert.deepEqual(readDockerignore(text), ['# not a comment: trimmed after the check', 'abs/path', 'x', 'spaced', '!neg', '**/*.tmp']);
});

test('dockerignore: a lone "!" and bad patterns are refused', () => {
  assert.throws(() => new PatternMatcher(['!']), /illegal exclusion pattern: "!"/);
  assert.throws(() => new PatternMatcher(['a[b']), /syntax error in pattern "a\[b"/);
  assert.throws(() => new PatternMatcher(['a\\']), /syntax error in pattern/);
});

test('dockerignore: FILE.dockerignore beside the Dockerfile takes precedence over the context\'s .dockerignore', () => {
  const have = new Set(['/ctx/.dockerignore', '/ctx/docker/app.Dockerfile.dockerignore']);
  assert.equal(ignoreFileFor('/ctx/docker/app.Dockerfile', '/ctx', (p) => have.has(p)), '/ctx/docker/app.Dockerfile.dockerignore');
  assert.equal(ignoreFileFor('/ctx/Dockerfile', '/ctx', (p) => have.has(p)), '/ctx/.dockerignore');
  assert.equal(ignoreFileFor('/ctx/Dockerfile', '/ctx', () => false), undefined);
});

test('dockerignore: 10,000 patterns against 10,000 paths stays fast; more patterns than the limit are refused', () => {
  const pats = Array.from({ length: 10000 }, (_, i) => `dir${i}/**/*.o`);
  const m = new PatternMatcher(pats);
  const t0 = Date.now();
  let n = 0;
  for (let i = 0; i < 1000; i++) if (m.matches(`dir${i}/sub/x.o`)) n++;
  assert.equal(n, 1000);
  assert.ok(Date.now() - t0 < 20000, `took ${Date.now() - t0} ms`);
  assert.throws(() => readDockerignore(Array.from({ length: 10001 }, (_, i) => `p${i}`).join('\n')), /limit of 10000 patterns/);
});
