/**
 * The setup most build tests share: a loopback registry seeded with busybox,
 * a helper mirroring docker.io to it, and busybox pulled; `stop` ends both.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
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

/** One helperWithBusybox for the whole test file: started before its tests (`ready` gets its helper), stopped after. */
export function busyboxHelperForFile(ready: (h: TestHelper) => void): void {
  let setup: BusyboxHelper | undefined;
  before(async () => {
    setup = await helperWithBusybox();
    ready(setup.h);
  });
  after(async () => {
    await setup?.stop();
  });
}
