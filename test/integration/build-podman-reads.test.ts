/**
 * An image built by `capsa build` as another engine sees it: podman (Debian's,
 * with its own temporary storage) loads Capsa's `save` archive and pulls
 * what Capsa pushed to the test's loopback registry, then exports both in
 * its own way; each export's flattened tree and config must equal Capsa's
 * own archive, and the root podman mounts from it has the files. The
 * Dockerfile makes the changes a layer format gets wrong first: deletions
 * (whiteouts), a directory removed and made again (opaque), hard links, a
 * symlink, modes and owners, a multi-stage COPY --from and every config
 * field. Skipped where podman is not installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startHelper, type TestHelper } from '../helpers/capsa';
import { seedBusybox } from '../helpers/oci';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { diffConfigs, diffTrees, readDockerArchive } from '../helpers/imagetree';
import { hasPodman, podmanSandbox, type PodmanSandbox } from '../helpers/podman';

let registry: TestRegistry;
let helper: TestHelper | undefined;
let work = '';
let sandbox: PodmanSandbox | undefined;

const podman = (args: string[]) => (sandbox as PodmanSandbox).podman(args);

before(async () => {
  if (!hasPodman) return;
  registry = await startRegistry();
  await seedBusybox(registry);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-podman-reads-'));
  sandbox = podmanSandbox(work, registry.host);
  helper = await startHelper({ mirror: registry.url, env: { SOURCE_DATE_EPOCH: '1700000000' } });
});

after(async () => {
  await helper?.stop();
  await registry?.stop();
  sandbox?.reset();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const DOCKERFILE = (base: string) =>
  [
    `FROM ${base} AS tools`,
    'RUN mkdir -p /out/sub && echo built > /out/sub/artifact && chmod 0750 /out/sub && ln -s sub/artifact /out/link',
    `FROM ${base}`,
    'RUN mkdir -p /data/old /data/keep && echo 1 > /data/old/a && echo 2 > /data/keep/b && echo h > /data/h1',
    'RUN rm -rf /data/old /bin/vi && mkdir /data/old && echo new > /data/old/c && ln /data/h1 /data/h2 && chown 1234:1234 /data/keep/b',
    'COPY --from=tools /out /opt/tools',
    'COPY --chmod=0640 --chown=1234:1234 hello.txt /srv/',
    'ENV APP=demo PATH=/opt/tools:$PATH',
    'WORKDIR /srv',
    'USER 1234',
    'EXPOSE 8080/tcp 53/udp',
    'LABEL org.example.name="reads" other=2',
    'VOLUME /data',
    'STOPSIGNAL SIGINT',
    'HEALTHCHECK --interval=5s --retries=2 CMD ["true"]',
    'ENTRYPOINT ["sh", "-c"]',
    'CMD ["cat /srv/hello.txt"]',
  ].join('\n') + '\n';

test("podman loads Capsa's saved build and pulls Capsa's pushed build, and sees the same files and config; push prints each layer pushed, already there, or mounted", { skip: !hasPodman && 'podman is not installed' }, async (t) => {
  const h = helper as TestHelper;
  const ctx = fs.mkdtempSync(path.join(work, 'ctx-'));
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), DOCKERFILE(`${registry.host}/library/busybox:latest`));
  fs.writeFileSync(path.join(ctx, 'hello.txt'), 'hello\n');
  const tag = `${registry.host}/reads/app:1`;
  const built = await h.cli(['build', '-q', '-t', tag, ctx], { timeoutMs: 300_000 });
  assert.equal(built.code, 0, built.stderr);
  const capsaTar = path.join(work, 'capsa.tar');
  const saved = await h.cli(['save', '-o', capsaTar, tag], { timeoutMs: 120_000 });
  assert.equal(saved.code, 0, saved.stderr);
  const ours = await readDockerArchive(capsaTar);
  assert.equal(ours.tree.get('/bin/vi'), undefined, 'the deletion is in the image');
  assert.equal(ours.tree.get('/data/old/a'), undefined, 'the opaque directory hides the old content');

  const compare = async (name: string, ptag: string) => {
    const out = path.join(work, `${name}.tar`);
    t.after(() => fs.rmSync(out, { force: true }));
    const ps = await podman(['save', '--format', 'docker-archive', '-o', out, ptag]);
    assert.equal(ps.code, 0, ps.stderr);
    const theirs = await readDockerArchive(out);
    const diffs = [...diffConfigs(ours.config, theirs.config, ['capsa', name]), ...diffTrees(ours.tree, theirs.tree, ['capsa', name])];
    assert.deepEqual(diffs, [], `podman (${name}) sees another image:\n${diffs.join('\n')}`);
    // the image's root as podman assembles it (no container run: podman's runtime needs rlimits this sandbox refuses)
    const mnt = await podman(['image', 'mount', ptag]);
    assert.equal(mnt.code, 0, mnt.stderr);
    try {
      const root = mnt.stdout.trim();
      const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');
      assert.equal(read('srv/hello.txt') + read('data/old/c') + read('opt/tools/sub/artifact'), 'hello\nnew\nbuilt\n');
      assert.equal(fs.readlinkSync(path.join(root, 'opt/tools/link')), 'sub/artifact');
      assert.deepEqual(fs.readdirSync(path.join(root, 'data/old')), ['c'], 'the opaque directory, as podman reads it');
      assert.equal(fs.existsSync(path.join(root, 'bin/vi')), false, 'the whiteout, as podman reads it');
      assert.equal(fs.statSync(path.join(root, 'data/h1')).ino, fs.statSync(path.join(root, 'data/h2')).ino, 'the hard link kept');
    } finally {
      await podman(['image', 'unmount', '--all', '--force']);
    }
  };

  const loaded = await podman(['load', '-i', capsaTar]);
  assert.equal(loaded.code, 0, loaded.stderr);
  await compare('podman-load', tag);
  await podman(['rmi', '-f', tag]);

  const pushed = await h.cli(['push', tag], { timeoutMs: 120_000 });
  assert.equal(pushed.code, 0, pushed.stderr);
  // docker push's lines: the repository, a line per layer as it goes up, the digest
  const layers = ours.config.rootfs.diff_ids.length;
  assert.match(pushed.stdout, new RegExp(`^The push refers to repository \\[${registry.host.replace(/\./g, '\\.')}/reads/app\\]$`, 'm'));
  assert.equal(pushed.stdout.match(/^[0-9a-f]{12}: Pushed$/gm)?.length, layers, pushed.stdout);
  assert.match(pushed.stdout, /^1: digest: sha256:[0-9a-f]{64} size: \d+$/m);
  const again = await h.cli(['push', tag], { timeoutMs: 120_000 });
  assert.equal(again.stdout.match(/^[0-9a-f]{12}: Layer already exists$/gm)?.length, layers, again.stdout);
  const other = `${registry.host}/reads/other:1`;
  assert.equal((await h.cli(['tag', tag, other])).code, 0);
  const mounted = await h.cli(['push', other], { timeoutMs: 120_000 });
  assert.equal(mounted.stdout.match(/^[0-9a-f]{12}: Mounted from reads\/app$/gm)?.length, layers, mounted.stdout);
  const pulled = await podman(['pull', '--tls-verify=false', tag]);
  assert.equal(pulled.code, 0, pulled.stderr);
  await compare('podman-pull', tag);
});
