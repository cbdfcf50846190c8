/** The process-wide decisions a plan carries (umask, step order, forwarded signals, search path): decided in spec.ts, encoded by plan.ts, executed by the shim without defaults of its own. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants as osConstants } from 'node:os';
import { buildExecPlan, buildRunPlan, CONTAINER_UMASK, DEFAULT_PATH, FORWARDED_SIGNALS, processSteps } from '../../server/runtime/spec';
import { encodePlan, envValue, RECORDED_BEFORE_POLICY, type Plan } from '../../server/runtime/plan';
import { specInput } from '../helpers/spec';

/** The fields of each record with this tag, in order. */
function records(plan: Plan, tag: string): string[][] {
  const widths: Record<string, number> = { umask: 1, steps: 1, signals: 1, searchpath: 1 };
  const parts = encodePlan(plan).toString('utf8').split('\0');
  const found: string[][] = [];
  for (let i = 0; i < parts.length; i++) if (parts[i] === tag) found.push(parts.slice(i + 1, i + 1 + widths[tag]));
  return found;
}

const security = (noNewPrivileges: boolean) => ({ capabilities: undefined, noNewPrivileges, rlimits: [], privileged: false }) as never;

test('a run plan gives the command the umask runc and Docker give, 022', () => {
  const plan = buildRunPlan(specInput());
  assert.equal(plan.umask, 0o022);
  assert.equal(CONTAINER_UMASK, 0o022);
  assert.deepEqual(records(plan, 'umask'), [['022']]);
});

test('with no_new_privs the seccomp filter is loaded last, after the user step', () => {
  const steps = buildRunPlan(specInput({ security: security(true) })).steps!;
  assert.deepEqual(steps, ['rlimits', 'tty', 'user', 'cwd', 'umask', 'nonewprivs', 'seccomp']);
  assert.ok(steps.indexOf('seccomp') > steps.indexOf('nonewprivs'));
});

test('without no_new_privs the seccomp filter is loaded before the user step drops the capabilities', () => {
  const steps = buildRunPlan(specInput({ security: security(false) })).steps!;
  assert.ok(steps.indexOf('seccomp') < steps.indexOf('user'));
  assert.deepEqual(processSteps(false), steps);
});

test('every step is listed exactly once, whatever no_new_privs says', () => {
  for (const nnp of [true, false]) {
    const steps = processSteps(nnp);
    assert.equal(new Set(steps).size, 7);
    assert.deepEqual([...steps].sort(), ['cwd', 'nonewprivs', 'rlimits', 'seccomp', 'tty', 'umask', 'user']);
  }
});

test('the steps record is the comma-separated order', () => {
  const plan = buildRunPlan(specInput({ security: security(true) }));
  assert.deepEqual(records(plan, 'steps'), [['rlimits,tty,user,cwd,umask,nonewprivs,seccomp']]);
});

test('the forwarded signals are this platform\'s numbers for the names spec.ts lists', () => {
  const plan = buildRunPlan(specInput());
  assert.deepEqual(plan.forwardSignals, FORWARDED_SIGNALS.map((n) => osConstants.signals[n]));
  assert.ok(plan.forwardSignals!.includes(osConstants.signals.SIGTERM));
  assert.ok(!plan.forwardSignals!.includes(osConstants.signals.SIGKILL));
  assert.deepEqual(records(plan, 'signals'), [[plan.forwardSignals!.join(',')]]);
});

test('the command is looked up in the container\'s PATH, the last assignment winning', () => {
  const plan = buildRunPlan(specInput({ env: ['PATH=/opt/bin:/bin'] }));
  assert.equal(plan.searchPath, '/opt/bin:/bin');
  assert.deepEqual(records(plan, 'searchpath'), [['/opt/bin:/bin']]);
  assert.equal(envValue(['PATH=/a', 'X=1', 'PATH=/b'], 'PATH'), '/b');
  assert.equal(envValue(['PATHX=/a'], 'PATH'), undefined);
});

const execInput = (env: string[], confinement?: Plan) => ({
  pid: 42,
  rootfs: '/c/rootfs',
  cmd: ['sh'],
  env,
  cwd: '/',
  user: { uid: 0, gid: 0, additionalGids: [] },
  tty: false,
  confinement,
});

test('an exec plan without PATH in its environment searches the default path', () => {
  const plan = buildExecPlan(execInput(['HOME=/root']));
  assert.equal(plan.searchPath, DEFAULT_PATH);
  assert.equal(plan.umask, 0o022);
});

test('an exec plan orders seccomp by the container\'s no_new_privs', () => {
  const run = buildRunPlan(specInput({ security: security(true) }));
  assert.deepEqual(buildExecPlan(execInput(['PATH=/bin'], run)).steps, processSteps(true));
  assert.deepEqual(buildExecPlan(execInput(['PATH=/bin'])).steps, processSteps(false));
});

test('a plan recorded before these fields existed is encoded with what the shim then did itself', () => {
  const plan = buildRunPlan(specInput({ env: ['PATH=/usr/bin'] }));
  for (const old of [{ ...plan, noNewPrivileges: true }, { ...plan, noNewPrivileges: false }]) {
    delete old.umask;
    delete old.steps;
    delete old.forwardSignals;
    delete old.searchPath;
    assert.deepEqual(records(old, 'umask'), [['022']]);
    assert.deepEqual(records(old, 'steps'), [[RECORDED_BEFORE_POLICY.steps(old.noNewPrivileges).join(',')]]);
    assert.deepEqual(records(old, 'signals'), [[FORWARDED_SIGNALS.map((n) => osConstants.signals[n]).join(',')]]);
    assert.deepEqual(records(old, 'searchpath'), [['/usr/bin']]);
  }
  const bare = { ...plan, env: [] as string[] };
  delete bare.searchPath;
  assert.deepEqual(records(bare, 'searchpath'), [[RECORDED_BEFORE_POLICY.searchPath]]);
});

test('a umask outside 0..0777 is refused before it reaches the shim', () => {
  const plan = buildRunPlan(specInput());
  assert.throws(() => encodePlan({ ...plan, umask: 0o1000 }), /umask/);
  assert.throws(() => encodePlan({ ...plan, umask: -1 }), /umask/);
  assert.deepEqual(records({ ...plan, umask: 0o077 }, 'umask'), [['077']]);
});
