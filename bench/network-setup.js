// Cost of NetworkManager.setup + teardown (netns, veth, address, route, hosts), run inside `unshare -n`.
const { NetworkManager } = require('../out/server/runtime/network/manager.js');
const fs = require('fs'), os = require('os'), path = require('path');
(async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-bench-'));
  const m = new NetworkManager(root);
  await m.reconcile(new Set(), new Set());
  const n = Number(process.argv[2] || 100);
  const lookup = () => { throw new Error('unused'); };
  const one = async (i, publish) => {
    const id = (i.toString(16).padStart(8, '0') + 'f'.repeat(56));
    fs.writeFileSync(path.join(root, 'hosts' + i), ''); 
    const t0 = process.hrtime.bigint();
    await m.setup({ id, name: 'c' + i, hostname: 'c' + i, options: { publish }, hostsPath: path.join(root, 'hosts' + i), resolvConfPath: path.join(root, 'resolv' + i), lookup });
    const t1 = process.hrtime.bigint();
    await m.teardown(id);
    const t2 = process.hrtime.bigint();
    return [Number(t1 - t0) / 1e6, Number(t2 - t1) / 1e6];
  };
  await one(99999); // first: bridge + nft table
  const s = [], d = [];
  for (let i = 0; i < n; i++) { const [a, b] = await one(i); s.push(a); d.push(b); }
  const p = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))].toFixed(2);
  console.log(`bridge setup    ms: median ${p(s, 0.5)}  p90 ${p(s, 0.9)}  (n=${n})`);
  console.log(`bridge teardown ms: median ${p(d, 0.5)}  p90 ${p(d, 0.9)}`);
  await m.close();
  fs.rmSync(root, { recursive: true, force: true });
})();
