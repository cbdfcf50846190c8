/**
 * The setup most build tests share: a loopback registry seeded with busybox,
 * a helper mirroring docker.io to it, and busybox pulled; `stop` ends both.
 */
import assert from 'node:assert/strict';
import { startHelper, type TestHelper } from './capsa';
import { seedBusybox } from './oci';
import { startRegistry, type TestRegistry } from './registry';

export interface BusyboxHelper {
  registry: TestRegistry;
  h: TestHelper;
  stop(): Promise<void>;
}

export async function helperWithBusybox(): Promise<BusyboxHelper> {
  const registry = await startRegistry();
  try {
    await seedBusybox(registry);
    const h = await startHelper({ mirror: registry.url });
    const p = await h.cli(['pull', 'busybox']);
    assert.equal(p.code, 0, p.stderr);
    return {
      registry,
      h,
      stop: async () => {
        await h.stop();
        await registry.stop();
      },
    };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}
