/**
 * `capsa build` against `podman build` (buildah) as an oracle, on the
 * images themselves: each Dockerfile of the table below is built by both
 * from the same context, both images are saved as docker-archives, and
 * their flattened trees (path, type, mode, owner, size, content hash, link
 * target, xattrs, hard links) and configs (Env, Cmd, Entrypoint, WorkingDir,
 * User, ExposedPorts, Labels, Volumes, StopSignal, Healthcheck, OnBuild,
 * Shell) are compared. Mtimes and history are not compared.
 *
 * podman runs with its own storage (overlay, temporary --root/--runroot), chroot
 * isolation and a registries.conf naming only the test's loopback registry:
 * every FROM is a full loopback reference, so it never reaches the network.
 *
 * A difference where buildah is the odd one out (Docker and BuildKit agree
 * with Capsa) is declared by the case (`podmanDiffers`, with the reason) and
 * listed in README.md ("Differences from podman build"); the test checks
 * that exactly those lines differ, so a change on either side shows up.
 * Cases whose feature Capsa does not have yet (`needs`) are skipped when
 * Capsa answers that it is not supported yet.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startHelper, type TestHelper } from '../helpers/capsa';
import { seedBusybox } from '../helpers/oci';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { diffConfigs, diffTrees, readDockerArchive } from '../helpers/imagetree';
import { hasPodman, podmanSandbox, run, type PodmanSandbox } from '../helpers/podman';


/** A context file: its content, or content with a mode (and owner). */
type CtxFile = string | { content?: string; mode?: number; uid?: number; gid?: number; symlink?: string; dir?: boolean };

interface Case {
  name: string;
  /** `$BASE` stands for the loopback busybox reference. */
  dockerfile: string;
  files?: Record<string, CtxFile>;
  buildArgs?: Record<string, string>;
  /** Features Capsa is still to get: the case is skipped while Capsa says "not supported yet". */
  needs?: ('run-mount' | 'run-heredoc' | 'copy-heredoc' | 'add-tar' | 'chown-name')[];
  /** Diff lines (matched) where buildah departs from Docker/BuildKit, with why (README lists them). */
  podmanDiffers?: { line: RegExp; reason: string }[];
  /** Why podman cannot build the case at all (Capsa's build is then checked alone). */
  podmanCannot?: string;
}

const WORKDIR_REASON = 'buildah 1.28 does not create a WORKDIR directory in the image unless a later step writes there; Docker and BuildKit create it (owned by USER in BuildKit)';

const CASES: Case[] = [
  {
    name: 'config instructions over a base: ENV, LABEL, EXPOSE, VOLUME, STOPSIGNAL, WORKDIR, USER, ENTRYPOINT, CMD',
    dockerfile: [
      'FROM $BASE', 'ENV A=1 B="two words"', 'ENV C=$A-x', 'LABEL org.example.a=one "b c"="d e"', 'EXPOSE 80 53/udp 8000-8001',
      'VOLUME /data ["/logs"]', 'STOPSIGNAL SIGQUIT', 'WORKDIR /srv', 'USER 1000:1000', 'ENTRYPOINT ["/bin/sh", "-c"]', 'CMD ["echo hi"]',
    ].join('\n'),
    podmanDiffers: [{ line: /^\/[^:]*: only in capsa \(dir /, reason: WORKDIR_REASON }],
  },
  {
    name: 'HEALTHCHECK with every option, shell form',
    dockerfile: ['FROM $BASE', 'HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=4 CMD wget -q -O- http://127.0.0.1/ || exit 1'].join('\n'),
  },
  {
    name: 'HEALTHCHECK exec form with defaults, then NONE in a stage built on it',
    dockerfile: ['FROM $BASE AS hc', 'HEALTHCHECK CMD ["/bin/true"]', 'FROM hc', 'LABEL seen=yes', 'FROM hc', 'HEALTHCHECK NONE'].join('\n'),
  },
  {
    name: 'HEALTHCHECK inherited from a stage',
    dockerfile: ['FROM $BASE AS hc', 'HEALTHCHECK --interval=30s CMD ["/bin/true"]', 'FROM hc', 'ENV X=1'].join('\n'),
  },
  {
    name: 'ARG before FROM in the FROM line and redeclared in the stage; --build-arg',
    buildArgs: { GIVEN: 'from-cli' },
    dockerfile: ['ARG TAG=latest', 'ARG UNUSED=u', 'FROM $BASE_NOTAG:${TAG}', 'ARG TAG', 'ARG GIVEN', 'RUN echo "$TAG $GIVEN $UNUSED." > /args', 'LABEL tag=$TAG given=$GIVEN'].join('\n'),
  },
  {
    name: 'predefined platform ARGs',
    dockerfile: ['FROM $BASE', 'ARG TARGETPLATFORM', 'ARG TARGETOS', 'ARG TARGETARCH', 'ARG BUILDPLATFORM', 'ARG BUILDOS', 'RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDPLATFORM $BUILDOS" > /platform', 'LABEL p=$TARGETPLATFORM'].join('\n'),
  },
  {
    name: 'SHELL changes the shell of RUN and ENTRYPOINT',
    dockerfile: ['FROM $BASE', 'SHELL ["/bin/sh", "-ec"]', 'RUN echo "$0 $-" | tr -d "\\n" > /shell', 'ENTRYPOINT echo from-shell'].join('\n'),
    podmanDiffers: [{ line: /^config\.Entrypoint: capsa \["\/bin\/sh","-ec","echo from-shell"\] \| podman \["\/bin\/sh","-c",/, reason: 'buildah 1.28 writes a shell-form ENTRYPOINT/CMD with /bin/sh -c even after SHELL; Docker and BuildKit use the SHELL' }],
  },
  {
    name: 'RUN writes files, deletes a base file (whiteout) and a file of its own stage',
    dockerfile: ['FROM $BASE', 'RUN echo one > /one && mkdir -p /a/b && echo two > /a/b/two && rm /etc/group', 'RUN rm /a/b/two && echo three > /three', 'RUN rm -rf /home/user'].join('\n'),
  },
  {
    name: 'RUN replaces a directory (opaque) and replaces a file with a directory',
    dockerfile: ['FROM $BASE', 'RUN mkdir -p /d/sub && echo x > /d/a && echo y > /d/sub/y && echo f > /f', 'RUN rm -rf /d && mkdir /d && echo b > /d/b && rm /f && mkdir /f && echo in > /f/in', 'RUN rm -rf /usr && mkdir /usr'].join('\n'),
  },
  {
    name: 'RUN makes hard links, in one layer and to a lower layer',
    dockerfile: ['FROM $BASE', 'RUN echo x > /h1 && ln /h1 /h2 && mkdir /hd && ln /h1 /hd/h3', 'RUN echo low > /low', 'RUN ln /low /low2'].join('\n'),
  },
  {
    name: 'RUN makes symlinks: absolute, relative, dangling, to a directory',
    dockerfile: ['FROM $BASE', 'RUN ln -s /etc/passwd /lnk && ln -s ../nowhere /dangling && mkdir /sd && ln -s sd /sdl && ln -sf /bin/busybox /bin/sh2'].join('\n'),
  },
  {
    name: 'RUN chmod and chown, setuid, setgid, sticky, on new and base files',
    dockerfile: [
      'FROM $BASE', 'RUN touch /f && chmod 640 /f && chown 1000:1000 /f', 'RUN touch /s && chmod 4755 /s && touch /g && chmod 2711 /g && mkdir /st && chmod 1777 /st',
      'RUN chmod 600 /etc/passwd && chown 1000 /etc/group && chmod 700 /home', 'RUN umask 077 && echo private > /private && mkdir /privdir',
    ].join('\n'),
  },
  {
    name: 'RUN exec form',
    dockerfile: ['FROM $BASE', 'RUN ["/bin/sh", "-c", "echo exec > /exec"]', 'RUN ["/bin/touch", "/touched"]', 'RUN ["mkdir", "-p", "/x/y"]'].join('\n'),
  },
  {
    name: 'COPY of files and directories, with and without a trailing slash, into new parents',
    files: { 'a.txt': 'a\n', 'exe.sh': { content: '#!/bin/sh\n', mode: 0o755 }, 'priv': { content: 'p', mode: 0o600 }, 'dir/one': '1', 'dir/sub/two': '2', 'dir/sub/.hidden': 'h', 'owned': { content: 'o', uid: 1234, gid: 4321 } },
    dockerfile: [
      'FROM $BASE', 'COPY a.txt /a.txt', 'COPY dir /dir', 'COPY dir/ /dir2/', 'COPY a.txt /newparent/deep/', 'COPY a.txt /tmp', 'COPY exe.sh priv owned /modes/',
      'COPY dir/sub /etc/sub', 'COPY . /all/',
    ].join('\n'),
  },
  {
    name: 'COPY with globs',
    files: { 'one.txt': '1', 'two.txt': '2', 'three.md': '3', 'dir/a.txt': 'a', 'dor/b.txt': 'b', 'dir/c.md': 'c' },
    dockerfile: ['FROM $BASE', 'COPY *.txt /globs/', 'COPY d?r/*.txt /g2/', 'COPY d[io]r /g3/', 'COPY t*o.txt /single.txt'].join('\n'),
  },
  {
    name: 'COPY of symlinks in the context',
    files: { 'target.txt': 't', 'rel': { symlink: 'target.txt' }, 'd/abs': { symlink: '/etc/passwd' }, 'd/inner': { symlink: '../target.txt' } },
    dockerfile: ['FROM $BASE', 'COPY rel /links/', 'COPY d /d'].join('\n'),
  },
  {
    name: 'COPY --chown numeric and --chmod',
    files: { 'a.txt': 'a', 'dir/one': '1', 'dir/sub/two': '2' },
    dockerfile: ['FROM $BASE', 'COPY --chown=1000:1000 a.txt /owned.txt', 'COPY --chown=1000 dir /cdir', 'COPY --chmod=0640 a.txt /m640.txt', 'COPY --chmod=755 dir /mdir', 'COPY --chown=1000:1000 --chmod=600 a.txt /newp/both.txt'].join('\n'),
  },
  {
    name: 'COPY --chown by name',
    needs: ['chown-name'],
    files: { 'a.txt': 'a' },
    dockerfile: ['FROM $BASE', 'COPY --chown=user:user a.txt /named.txt', 'COPY --chown=user a.txt /named2.txt', 'COPY --chown=nobody:root a.txt /named3.txt'].join('\n'),
  },
  {
    name: '.dockerignore with ! exceptions',
    files: {
      '.dockerignore': '*.log\n!keep.log\nsecret/\nbuild/**\n!build/out.bin\n**/*.tmp\n',
      'a.txt': 'a', 'x.log': 'x', 'keep.log': 'k', 'secret/s': 's', 'build/obj.o': 'o', 'build/out.bin': 'b', 'deep/er/t.tmp': 't', 'deep/er/ok': 'ok',
    },
    dockerfile: ['FROM $BASE', 'COPY . /ctx/'].join('\n'),
  },
  {
    name: 'multi-stage: FROM stage AS, COPY --from by name and by index, stage built on a stage',
    files: { 'src.txt': 'src' },
    dockerfile: [
      'FROM $BASE AS builder', 'WORKDIR /work', 'COPY src.txt .', 'RUN cat src.txt src.txt > built && mkdir out && echo o > out/o && chmod 700 out && chown 1000:1000 out/o built',
      'FROM builder AS second', 'RUN echo second > /second',
      'FROM $BASE', 'COPY --from=builder /work/built /app/', 'COPY --from=0 /work/out /app/out', 'COPY --from=second /second /work/built /both/', 'COPY --from=builder /work /whole',
    ].join('\n'),
  },
  {
    name: 'a scratch final stage with files from a stage',
    dockerfile: ['FROM $BASE AS b', 'RUN mkdir -p /out/etc && echo hi > /out/etc/hello && chmod 0444 /out/etc/hello', 'FROM scratch', 'COPY --from=b /bin/busybox /bin/', 'COPY --from=b /out /', 'ENTRYPOINT ["/bin/busybox"]', 'CMD ["sh"]'].join('\n'),
  },
  {
    name: 'a scratch stage with config only',
    dockerfile: ['FROM scratch', 'ENV K=v', 'LABEL l=1', 'CMD ["x"]'].join('\n'),
  },
  {
    name: 'ONBUILD triggers are recorded in the config',
    dockerfile: ['FROM $BASE', 'ONBUILD RUN echo triggered > /onbuild', 'ONBUILD COPY . /app'].join('\n'),
  },
  {
    name: "a base image's ONBUILD triggers run first (ENV, RUN, COPY), and are not inherited",
    files: { 'a.txt': 'a' },
    dockerfile: ['FROM $ONBUILD_PARENT', 'RUN cat /onbuild /app/a.txt > /both'].join('\n'),
  },
  {
    name: 'WORKDIR creates its directories, also after USER',
    dockerfile: ['FROM $BASE', 'WORKDIR /a/b/c', 'WORKDIR rel/dir', 'USER 1000', 'WORKDIR /owned/by', 'WORKDIR /tmp', 'USER 0', 'WORKDIR /etc'].join('\n'),
    podmanDiffers: [{ line: /^\/[^:]*: only in capsa \(dir /, reason: WORKDIR_REASON }],
  },
  {
    name: 'ADD of a local file and directory (no archive)',
    files: { 'a.txt': 'a', 'dir/x': 'x' },
    dockerfile: ['FROM $BASE', 'ADD a.txt /added/', 'ADD dir /adir', 'ADD --chown=1000:1000 a.txt /addown.txt'].join('\n'),
  },
  {
    name: 'ADD of a local tar extracts it',
    needs: ['add-tar'],
    files: { 'plain.txt': 'p' },
    dockerfile: ['FROM $BASE', 'ADD files.tar /extracted/', 'ADD files.tar.gz /gz/', 'ADD files.tar.bz2 /bz2/', 'ADD files.tar.xz /xz', 'ADD files.tar.zst /zst/', 'ADD plain.txt notar.gz /raw/'].join('\n'),
    podmanDiffers: [{ line: /^\/(extracted|bz2|xz|zst): capsa dir 0755 0:0 \| podman dir 0755 1000:1000$/, reason: "buildah applies the archive's own `./` entry (owned 1000:1000 here) to the destination directory; BuildKit (containerd's apply skips the entry that resolves to the root) and Docker (Untar skips `.` when it exists) leave the destination as created" }],
  },
  {
    name: 'COPY and ADD of heredocs',
    needs: ['copy-heredoc'],
    podmanCannot: 'buildah 1.28 (Debian 12) does not support COPY/ADD heredocs: it takes "<<EOF" for a source path ("copier: stat: \"/<<EOF\": no such file or directory")',
    dockerfile: ['FROM $BASE', 'ARG WHO=world', 'COPY <<EOF /hello.txt', 'hello $WHO', 'EOF', 'COPY --chmod=755 <<-"EOT" /script.sh', '\t#!/bin/sh', '\techo $WHO', '\tEOT', 'ADD <<one <<two /multi/', 'first', 'one', 'second', 'two'].join('\n'),
  },
  {
    name: 'RUN heredocs',
    needs: ['run-heredoc'],
    podmanCannot: 'buildah 1.28 (Debian 12) does not parse RUN heredocs: it reads the body as instructions ("Unknown instruction: ECHO")',
    dockerfile: ['FROM $BASE', 'RUN <<EOF', 'echo line1 > /h1', 'echo line2 >> /h1', 'EOF', 'RUN cat <<EOT > /h2', 'literal $HOME', 'EOT', 'RUN <<EOF sh', 'mkdir /hd && echo x > /hd/x', 'EOF'].join('\n'),
  },
  {
    name: 'RUN --mount=type=cache, bind and tmpfs leave nothing in the image',
    needs: ['run-mount'],
    podmanDiffers: [{ line: /^\/m: only in podman \(dir /, reason: 'buildah 1.28 leaves the parent directory it made for a RUN --mount target in the image; BuildKit removes the mount points it created' }],
    files: { 'ctx.txt': 'from-context' },
    dockerfile: [
      'FROM $BASE AS other', 'RUN echo other > /o',
      'FROM $BASE', 'RUN --mount=type=cache,target=/cache echo c > /cache/c && cat /cache/c > /got-cache',
      'RUN --mount=type=bind,target=/ctx cat /ctx/ctx.txt > /got-bind', 'RUN --mount=type=bind,from=other,source=/o,target=/m/o cp /m/o /got-other',
      'RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /got-tmpfs',
    ].join('\n'),
  },
  {
    name: 'the escape directive with backtick continuations',
    files: { 'a.txt': 'a' },
    dockerfile: ['# escape=`', 'FROM $BASE', 'RUN echo one `', '  two > /esc', 'COPY a.txt `', '  /esc-copy/', 'LABEL path=C:\\\\dir'].join('\n'),
    podmanDiffers: [{ line: /^config\.Labels: capsa \{"path":"C:\\\\\\\\dir"\} \| podman \{"path":"C:\\\\dir"\}/, reason: 'buildah 1.28 ignores `# escape=` in its variable lexer: a backslash still escapes there' }],
  },
  {
    name: 'line continuations, comments inside them, empty lines',
    dockerfile: ['FROM $BASE', 'RUN echo a \\', '# a comment', '    b \\', '', '    c > /cont', 'ENV X=1 \\', '    Y=2', 'LABEL l="$X$Y"'].join('\n'),
  },
  {
    name: 'ENV and ARG expansion with modifiers, ENV order and PATH override',
    buildArgs: { A: 'given' },
    dockerfile: [
      'FROM $BASE', 'ARG A', 'ARG D=dflt', 'ENV PATH=/opt/bin:$PATH FIRST=1', 'ENV E=${A:-x} F=${NOPE:-fallback} G=${A:+alt} H=${NOPE:+x} I="$D/$A"', 'ENV FIRST=again',
      'WORKDIR /w/$A', 'RUN echo "$E $F $G $H $I $PATH" > /expanded', 'COPY --chown=${UID:-1000} Dockerfile /w/$A/${D}.txt', 'USER ${A:-nobody}x',
    ].join('\n'),
  },
  {
    name: 'USER by name: RUN runs as that user, files are theirs',
    dockerfile: ['FROM $BASE', 'USER user', 'RUN id > /tmp/id && touch /home/user/mine', 'USER user:root', 'RUN touch /tmp/group-root', 'USER root'].join('\n'),
  },
  {
    name: 'COPY over an existing base file and directory keeps the rest',
    files: { 'passwd': 'root:x:0:0::/root:/bin/sh\n', 'bin/extra': { content: 'e', mode: 0o755 } },
    dockerfile: ['FROM $BASE', 'COPY passwd /etc/passwd', 'COPY bin /bin/'].join('\n'),
  },
];

const ignoreLabels = ['io.buildah.version'];


/** buildah leaves the files and directory it bind-mounts over for RUN in the image, when the base lacks them; Docker does not. */
const PODMAN_RUN_MOUNTPOINTS = /^\/(etc\/hostname|etc\/hosts|etc\/resolv\.conf|run): only in podman \((file 0755 0:0 0B |dir 0755 0:0)/;

let registry: TestRegistry;
let helper: TestHelper | undefined;
let work = '';
let podmanArgs: string[] = [];
let podmanEnv: NodeJS.ProcessEnv = {};

let sandbox: PodmanSandbox | undefined;

before(async () => {
  if (!hasPodman) return;
  registry = await startRegistry();
  await seedBusybox(registry);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-compare-'));
  sandbox = podmanSandbox(work, registry.host);
  podmanEnv = sandbox.env;
  podmanArgs = sandbox.args;
  helper = await startHelper({ mirror: registry.url });
  // the base with ONBUILD triggers: built once (by podman) and pushed, so both builders pull the same image
  const parent = fs.mkdtempSync(path.join(work, 'parent-'));
  fs.writeFileSync(path.join(parent, 'Dockerfile'), `FROM ${registry.host}/library/busybox:latest\nONBUILD ENV T=triggered\nONBUILD RUN echo "$T" > /onbuild\nONBUILD COPY a.txt /app/\n`);
  const pb = await run('podman', [...podmanArgs, 'build', '--isolation', 'chroot', '--format', 'docker', '-q', '-t', 'localhost/compare-parent:latest', parent], podmanEnv);
  assert.equal(pb.code, 0, `podman build of the ONBUILD base: ${pb.stderr}`);
  const pp = await run('podman', [...podmanArgs, 'push', '--tls-verify=false', '--format', 'v2s2', 'localhost/compare-parent:latest', `docker://${onbuildParent()}`], podmanEnv);
  assert.equal(pp.code, 0, `podman push of the ONBUILD base: ${pp.stderr}`);
});

const onbuildParent = (): string => `${registry.host}/compare/onbuild-parent:latest`;

after(async () => {
  await helper?.stop();
  await registry?.stop();
  if (work) {
    sandbox?.reset();
    fs.rmSync(work, { recursive: true, force: true });
  }
});

function writeContext(dir: string, c: Case): void {
  const base = `${registry.host}/library/busybox:latest`;
  const df = c.dockerfile.replaceAll('$ONBUILD_PARENT', onbuildParent()).replaceAll('$BASE_NOTAG', `${registry.host}/library/busybox`).replaceAll('$BASE', base);
  fs.writeFileSync(path.join(dir, 'Dockerfile'), df + '\n');
  for (const [name, f] of Object.entries(c.files ?? {})) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const spec = typeof f === 'string' ? { content: f } : f;
    if (spec.symlink !== undefined) fs.symlinkSync(spec.symlink, p);
    else if (spec.dir) fs.mkdirSync(p, { recursive: true });
    else fs.writeFileSync(p, spec.content ?? '');
    if (spec.mode !== undefined) fs.chmodSync(p, spec.mode);
    if (spec.uid !== undefined) fs.lchownSync(p, spec.uid, spec.gid ?? spec.uid);
  }
  if (c.needs?.includes('add-tar')) {
    fs.mkdirSync(path.join(dir, 'tarsrc/sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'tarsrc/sub/in-tar.txt'), 'in tar\n');
    fs.symlinkSync('sub/in-tar.txt', path.join(dir, 'tarsrc/link'));
    spawnSync('tar', ['-cf', path.join(dir, 'files.tar'), '-C', path.join(dir, 'tarsrc'), '--owner=1000', '--group=1000', '.']);
    spawnSync('tar', ['-czf', path.join(dir, 'files.tar.gz'), '-C', path.join(dir, 'tarsrc'), '.']);
    for (const [tool, ext] of [['bzip2', 'bz2'], ['xz', 'xz'], ['zstd', 'zst']]) spawnSync('sh', ['-c', `${tool} -c < files.tar > files.tar.${ext}`], { cwd: dir });
    spawnSync('sh', ['-c', 'echo no tar | gzip > notar.gz'], { cwd: dir });
    fs.rmSync(path.join(dir, 'tarsrc'), { recursive: true });
  }
}

for (const [i, c] of CASES.entries()) {
  test(`capsa build and podman build agree: ${c.name}`, { skip: !hasPodman && 'podman is not installed' }, async (t) => {
    const h = helper as TestHelper;
    const dir = fs.mkdtempSync(path.join(work, 'ctx-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    writeContext(dir, c);
    const tag = `compare/case${i}:latest`;
    const args = Object.entries(c.buildArgs ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);

    const built = await h.cli(['build', '-q', '-t', tag, ...args, dir], { timeoutMs: 300_000 });
    if (built.code !== 0 && c.needs?.length && /supported yet/.test(built.stderr)) {
      t.skip(`needs ${c.needs.join(', ')}: ${built.stderr.trim().split('\n').pop()}`);
      return;
    }
    assert.equal(built.code, 0, `capsa build failed: ${built.stdout}${built.stderr}`);
    const capsaTar = path.join(dir, '..', `capsa-${i}.tar`);
    const podmanTar = path.join(dir, '..', `podman-${i}.tar`);
    t.after(() => fs.rmSync(capsaTar, { force: true }));
    t.after(() => fs.rmSync(podmanTar, { force: true }));
    const saved = await h.cli(['save', '-o', capsaTar, tag], { timeoutMs: 120_000 });
    assert.equal(saved.code, 0, saved.stderr);
    if (c.podmanCannot) {
      t.skip(`capsa built it; podman cannot: ${c.podmanCannot}`);
      return;
    }

    const ptag = `localhost/compare-case${i}:latest`;
    const pb = await run('podman', [...podmanArgs, 'build', '--isolation', 'chroot', '--format', 'docker', '--tls-verify=false', '-q', '-t', ptag, ...args, dir], podmanEnv);
    assert.equal(pb.code, 0, `podman build failed: ${pb.stderr}`);
    const ps = await run('podman', [...podmanArgs, 'save', '--format', 'docker-archive', '-o', podmanTar, ptag], podmanEnv);
    assert.equal(ps.code, 0, ps.stderr);

    const ours = await readDockerArchive(capsaTar);
    const theirs = await readDockerArchive(podmanTar);
    const diffs = [...diffConfigs(ours.config, theirs.config, ['capsa', 'podman'], ignoreLabels), ...diffTrees(ours.tree, theirs.tree, ['capsa', 'podman'])];
    const declared = c.podmanDiffers ?? [];
    const unexplained = diffs.filter((d) => !declared.some((k) => k.line.test(d)) && !PODMAN_RUN_MOUNTPOINTS.test(d));
    const missing = declared.filter((k) => !diffs.some((d) => k.line.test(d)));
    assert.deepEqual(unexplained, [], `capsa and podman differ:\n${unexplained.join('\n')}`);
    assert.deepEqual(missing.map((m) => m.reason), [], 'a declared podman difference is gone: update the case and the README');
    const listed = diffs.filter((d) => !PODMAN_RUN_MOUNTPOINTS.test(d));
    t.diagnostic(`compare: ${listed.length === 0 ? 'identical' : `${listed.length} listed podman difference(s)`}`);
  });
}
