/**
 * The planner against podman's builder (buildah) as an oracle: Dockerfiles
 * FROM scratch whose instructions only change the image config, built by
 * podman, and the config our plan says they produce compared field by
 * field. Skipped where podman is not installed.
 *
 * Known divergences of buildah 1.28 from BuildKit, left out of the
 * comparison: it ignores `# escape=` in its variable lexer, and it runs a
 * shell-form CMD with /bin/sh after SHELL changed the shell (BuildKit uses
 * the SHELL, as Docker's reference says).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDockerfile } from '../../server/build/stages';
import { graphFor, planBuild } from '../../server/build/expand';

const hasPodman = spawnSync('podman', ['--version']).status === 0;
const AMD64 = { os: 'linux', architecture: 'amd64' };

const CASES: { name: string; dockerfile: string; buildArgs: Record<string, string> }[] = [
  {
    name: 'ARG scoping, ENV over ARG, quotes, escapes and modifiers',
    buildArgs: { A: 'given' },
    dockerfile: [
      'ARG G=global', 'FROM scratch', 'ARG G', 'ARG A=hello', 'ARG PORTS="80 53/udp"',
      'ENV E="env value" F=${A:-x} \\', '    P=C:\\\\path', 'ENV abc=bye def=$abc', 'ENV old form value',
      'LABEL a=$A b="${NOPE:-def}" c=\'$A\' d="q\\"uote" e=${A:+alt} h=$G j="${F}" k=x\\ y l=$def m="${old}" n=${NOPE:+x}',
      'EXPOSE $PORTS 8000-8001/tcp', 'VOLUME ["/data/$A", "/v2"]', 'USER ${A}:$A', 'WORKDIR /srv', 'WORKDIR sub/$A',
      'STOPSIGNAL SIGKILL', 'CMD echo $A', 'ENTRYPOINT ["/e", "$A"]',
    ].join('\n'),
  },
  {
    name: 'continuations, comments inside them, empty lines, case-insensitive names',
    buildArgs: {},
    dockerfile: ['from scratch', 'env A=1 \\', '# a comment', '    B=2 \\', '', '    C=3', 'label x="$A$B$C" \\', '  y=${A}', 'Cmd ["a", \\', ' "b c"]'].join('\n'),
  },
  {
    name: 'ENTRYPOINT without a CMD, JSON volumes, ENV old form with spaces',
    buildArgs: { V: '/vol' },
    dockerfile: ['FROM scratch', 'ARG V', 'ENV K  a  b  ', 'VOLUME $V /other', 'ENTRYPOINT exec thing', 'LABEL v=$V k="$K"'].join('\n'),
  },
];

for (const c of CASES) {
  test(`oracle (podman build): ${c.name}`, { skip: !hasPodman && 'podman is not installed' }, (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-oracle-'));
    const tag = `localhost/capsa-oracle-${process.pid}-${Date.now()}`;
    t.after(() => {
      spawnSync('podman', ['rmi', '-f', tag], { stdio: 'ignore' });
      fs.rmSync(dir, { recursive: true, force: true });
    });
    fs.writeFileSync(path.join(dir, 'Dockerfile'), c.dockerfile);
    const args = Object.entries(c.buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);
    execFileSync('podman', ['build', '--format', 'docker', '-q', '-t', tag, ...args, dir], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120000 });
    const cfg = JSON.parse(execFileSync('podman', ['inspect', tag, '--format', '{{json .Config}}']).toString()) as Record<string, unknown>;

    const df = loadDockerfile(c.dockerfile);
    const opts = { platform: AMD64, buildPlatform: AMD64, buildArgs: c.buildArgs };
    const ours = planBuild(df, opts, graphFor(df, opts), new Map()).stages[0].config;

    const labels = { ...(cfg.Labels as Record<string, string>) };
    delete labels['io.buildah.version'];
    assert.deepEqual(ours.labels, labels, 'labels');
    assert.deepEqual(ours.env, cfg.Env, 'env');
    assert.deepEqual(ours.user, cfg.User ?? '', 'user');
    assert.deepEqual(ours.workdir, cfg.WorkingDir ?? '/', 'workdir');
    assert.deepEqual([...ours.exposedPorts].sort(), Object.keys(cfg.ExposedPorts ?? {}).sort(), 'exposed ports');
    assert.deepEqual([...ours.volumes].sort(), Object.keys(cfg.Volumes ?? {}).sort(), 'volumes');
    assert.deepEqual(ours.stopSignal, cfg.StopSignal, 'stop signal');
    assert.deepEqual(ours.cmd ?? null, cfg.Cmd ?? null, 'cmd');
    assert.deepEqual(ours.entrypoint ?? null, cfg.Entrypoint ?? null, 'entrypoint');
  });
}
