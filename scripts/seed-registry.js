#!/usr/bin/env node
// Seeds a registry with the busybox image the tests use (Debian's
// busybox-static as library/busybox:latest, schema2, gzip), built by the same
// code as the tests' images: out/test/helpers/oci.js, compiled from
// test/helpers/oci.ts. Skips the push when the tag already exists.
//
//   node scripts/seed-registry.js [URL] [REPO[:TAG]]   (default http://127.0.0.1:5757 library/busybox:latest)
'use strict';
const path = require('node:path');
const fs = require('node:fs');

async function main() {
  const url = process.argv[2] || 'http://127.0.0.1:5757';
  const ref = process.argv[3] || 'library/busybox:latest';
  const colon = ref.lastIndexOf(':');
  const [repo, tag] = colon > 0 ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];

  const helper = path.join(__dirname, '..', 'out', 'test', 'helpers', 'oci.js');
  if (!fs.existsSync(helper)) {
    console.error(`seed-registry: ${helper} is missing; build first (npx tsc -p .)`);
    process.exit(1);
  }
  const oci = require(helper);

  const head = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: [oci.MediaTypes.dockerManifest, oci.MediaTypes.ociManifest, oci.MediaTypes.ociIndex, oci.MediaTypes.dockerManifestList].join(', ') },
  });
  if (head.status === 200) {
    console.log(`seed-registry: ${repo}:${tag} already in ${url} (${head.headers.get('docker-content-digest')})`);
    return;
  }
  const image = await oci.seedBusybox({ url }, repo, tag);
  console.log(`seed-registry: pushed ${repo}:${tag} to ${url} (${image.manifestDigest})`);
}

main().catch((err) => {
  console.error(`seed-registry: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
