/** The extension branches on a failed request's code: not found, conflict, helper unreachable, idmap unsupported. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionError, ConnectionErrors, ErrorCodes as RpcErrorCodes, ResponseError } from 'vscode-jsonrpc';
import { failureKind, HelperNotConnectedError, isIdmapUnsupported } from '../../extension/errors';
import { ErrorCodes } from '../../server/protocol';

const helperError = (code: string, data: object = {}) => new ResponseError(ErrorCodes.CapsaError, 'failed', { code, ...data });

test('a helper error is classified by its code, not its message', () => {
  assert.equal(failureKind(helperError('E_CONTAINER_NOT_FOUND')), 'not-found');
  assert.equal(failureKind(helperError('E_IMAGE_NOT_FOUND')), 'not-found');
  assert.equal(failureKind(helperError('E_CONFLICT')), 'conflict');
  assert.equal(failureKind(new ResponseError(ErrorCodes.CapsaError, 'no such container: x', { code: 'E_CONFLICT' })), 'conflict');
  assert.equal(failureKind(helperError('E_FROM_A_NEWER_HELPER')), undefined);
});

test('a helper that is not connected, or whose connection closed, is unreachable', () => {
  assert.equal(failureKind(new HelperNotConnectedError('/run/capsa/capsa.sock')), 'unreachable');
  assert.equal(new HelperNotConnectedError('/s').message, 'Capsa helper is not connected (socket /s)');
  assert.equal(failureKind(new ConnectionError(ConnectionErrors.Closed, 'closed')), 'unreachable');
  assert.equal(failureKind(new ResponseError(RpcErrorCodes.PendingResponseRejected, 'Pending response rejected since connection got disposed')), 'unreachable');
  assert.equal(failureKind(new Error('anything')), undefined);
});

test('an idmap failure is recognised by the setup step in the fields of the error or of a cause', () => {
  assert.ok(isIdmapUnsupported(helperError('E_CONTAINER_SETUP', { fields: { step: 'idmap', path: '/w', errno: 22 } })));
  assert.ok(isIdmapUnsupported(helperError('E_CONTAINER_SETUP', { causes: [{ code: 'E_CONTAINER_SETUP', message: 'x', fields: { step: 'idmap' } }] })));
  assert.ok(!isIdmapUnsupported(helperError('E_CONTAINER_SETUP', { fields: { step: 'mount' } })));
  // a bad idmap option is the user's to fix, not a reason to run without idmapping
  assert.ok(!isIdmapUnsupported(new ResponseError(ErrorCodes.CapsaError, 'idmap target /w is not a bind mount of this container', { code: 'E_INVALID_ARGUMENT' })));
});
