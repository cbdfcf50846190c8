/**
 * Binary extended attributes through a real pull: a layer tarred by GNU tar
 * with --xattrs, pushed to the local registry, pulled and unpacked, read back
 * from disk by something other than Capsa (Python's os.getxattr, getcap).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pullImage } from '../../server/image/pull';
import { ImageStore } from '../../server/image/store';
import { RegistryClient } from '../../server/image/registry';
import type { CapsaConfig } from '../../server/config';
import { fileRegistry } from '../helpers/capsa';
import { pushImage } from '../helpers/oci';

const registry = fileRegistry();

/** An xattr's value as bytes, read by Python rather than by the code under test. */
function getxattr(file: string, name: string): Buffer {
  const hex = execFileSync('python3', ['-c', 'import os, sys; print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())', file, name]).toString().trim();
  return Buffer.from(hex, 'hex');
}

test('a security.capability xattr with non-UTF-8 bytes arrives byte-exact on disk after a pull', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const src = path.join(root, 'src');
  fs.mkdirSync(path.join(src, 'bin'), { recursive: true });
  const ping = path.join(src, 'bin', 'ping');
  fs.writeFileSync(ping, '#!/bin/sh\n', { mode: 0o755 });
  // cap_setfcap is bit 31: the permitted mask's last byte is 0x80, which no UTF-8 decoder keeps.
  execFileSync('setcap', ['cap_setfcap,cap_net_raw+ep', ping]);
  const cap = getxattr(ping, 'security.capability');
  assert.ok(cap.includes(0x80), `the capability holds a non-UTF-8 byte: ${cap.toString('hex')}`);
  const other = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0xc3, 0x28]);
  execFileSync('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.binary", bytes.fromhex(sys.argv[2]))', ping, other.toString('hex')]);
  const tarFile = path.join(root, 'layer.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-cf', tarFile, '-C', src, 'bin']);

  const repo = `xattrs/cap-${Math.random().toString(36).slice(2, 10)}`;
  await pushImage(registry, repo, 'latest', { layers: [fs.readFileSync(tarFile)] });
  const config: CapsaConfig = { root: path.join(root, 'capsa'), socket: path.join(root, 'sock'), registries: { mirrors: {}, insecure: [] }, maxConcurrentDownloads: 3 };
  const store = new ImageStore(config.root);
  const client = new RegistryClient({ config, dockerConfig: false, backoffMs: 20 });
  t.after(() => client.close());
  const r = await pullImage(`${registry.host}/${repo}:latest`, { store, config, client });

  const [dir] = await store.layerDirs(r.image);
  const unpacked = path.join(dir, 'bin', 'ping');
  assert.deepEqual(getxattr(unpacked, 'security.capability'), cap, 'security.capability byte for byte');
  assert.deepEqual(getxattr(unpacked, 'user.binary'), other, 'user.binary byte for byte');
  assert.match(execFileSync('getcap', [unpacked]).toString(), /cap_net_raw,cap_setfcap[=+]ep/);
});
