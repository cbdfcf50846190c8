import type { SpecInput } from '../../server/runtime/spec';

/** A run plan's input for unit tests: two layers, sh, root, no terminal, no binds; `over` replaces fields. */
export function specInput(over: Partial<SpecInput> = {}): SpecInput {
  return {
    layerDirs: ['/s/layers/sha256/bb', '/s/layers/sha256/aa'],
    image: { Env: ['PATH=/bin', 'LANG=C'], Cmd: ['sh'] },
    paths: { dir: '/c', rootfs: '/c/rootfs', upper: '/c/upper', work: '/c/work', hostname: '/c/hostname', hosts: '/c/hosts', resolvConf: '/c/resolv.conf' },
    hostname: 'abc123',
    user: { uid: 0, gid: 0, additionalGids: [] },
    tty: false,
    binds: [],
    ...over,
  };
}
