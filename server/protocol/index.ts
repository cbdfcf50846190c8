/**
 * The Capsa protocol: every request and notification between the helper and
 * its clients (the VS Code extension, the `capsa` CLI), declared once.
 *
 * Transport: JSON-RPC 2.0 with Content-Length framing (vscode-jsonrpc), over
 * the helper's stdio or its unix socket. This folder is the only part of
 * server/ that extension/ and server/cli/ may import.
 *
 * The messages are grouped by feature, one module each; this barrel
 * re-exports them all, and clients import only from here.
 */
export * from './types';
export * from './errors';
export * from './system';
export * from './images';
export * from './containers';
export * from './streams';
export * from './timings';
export * from './events';
export * from './network';
export * from './lifecycle';
export * from './volumes';
export * from './commit';
export * from './copy';
export * from './build';

// ---- checking params, and printing what others wrote ---------------------
export { v, ParamsError, describe, type Schema, type Infer } from './validate';
export { MAX_DEVICE_SPEC, PULL_POLICIES, USERNS_MODES, parseDeviceSpec, pullPolicyProblem, usernsProblem, type DeviceMapping } from './runoptions';
export { OS_VALUES, ARCH_VALUES, platformProblem, normalizePlatform as normalizePlatformParts, type PlatformParts } from './platform';
export { printable, printableLines, listed, clip } from '../util/text';
