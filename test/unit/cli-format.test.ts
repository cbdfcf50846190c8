import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ownerColumn, table } from '../../server/cli/format';

test("an OWNER column is added only when a row is another user's: root's own list prints as Docker's, a user's list never has it", () => {
  const header = ['NAME'];
  const rows = [['a'], ['b']];
  assert.deepEqual(ownerColumn(header, rows, [undefined, undefined]), { header, rows }, "a user's list has no owner fields");
  assert.deepEqual(ownerColumn(header, rows, [0, 0]), { header, rows }, "root's own objects only");
  const t = ownerColumn(header, rows, [0, 1001]);
  assert.deepEqual(t, { header: ['NAME', 'OWNER'], rows: [['a', '0'], ['b', '1001']] });
  assert.equal(table(t.header, t.rows), 'NAME   OWNER\na      0\nb      1001\n');
});
