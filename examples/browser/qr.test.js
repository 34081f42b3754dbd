// Unit tests of qr.js and handoff.js: `node --test examples/browser/qr.test.js` (Node 20 or
// later; tests/example.rs runs it). Known values are the standard's worked examples and tables;
// that whole codes decode is checked with zbarimg by tests/example.rs.
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { test } from 'node:test';
import {
  alignmentCentres,
  capacity,
  codewords,
  encode,
  formatBits,
  gfMultiply,
  interleaved,
  reedSolomon,
  versionBits,
} from './qr.js';
import { fromBase64url, newChannel, open, phoneLink, readLink, seal, toBase64url } from './handoff.js';

// Node 18 (Debian 12's) has WebCrypto only as a module; browsers and later Node as a global.
globalThis.crypto ??= webcrypto;

test('GF(256) multiplication reduces by x^8 + x^4 + x^3 + x^2 + 1', () => {
  assert.equal(gfMultiply(0x80, 2), 0x1d);
  assert.equal(gfMultiply(0, 0xff), 0);
  assert.equal(gfMultiply(1, 0xab), 0xab);
  let power = 1;
  for (let i = 0; i < 255; i++) power = gfMultiply(power, 2);
  assert.equal(power, 1, '2 generates the field: 2^255 = 1');
});

test('Reed-Solomon codewords of the standard example (HELLO WORLD, 1-M)', () => {
  const data = [32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17, 236, 17, 236, 17];
  assert.deepEqual(reedSolomon(data, 10), [196, 35, 39, 119, 235, 215, 231, 226, 93, 23]);
});

test('format bits for level M, every mask', () => {
  const table = [
    '101010000010010', '101000100100101', '101111001111100', '101101101001011',
    '100010111111001', '100000011001110', '100111110010111', '100101010100000',
  ];
  table.forEach((bits, mask) => assert.equal(formatBits(mask).toString(2).padStart(15, '0'), bits));
});

test('version bits', () => {
  assert.equal(versionBits(7).toString(2).padStart(18, '0'), '000111110010010100');
  assert.equal(versionBits(40).toString(2).padStart(18, '0'), '101000110001101001');
});

test('alignment pattern centres', () => {
  assert.deepEqual(alignmentCentres(1), []);
  assert.deepEqual(alignmentCentres(2), [6, 18]);
  assert.deepEqual(alignmentCentres(7), [6, 22, 38]);
  assert.deepEqual(alignmentCentres(14), [6, 26, 46, 66]);
  assert.deepEqual(alignmentCentres(32), [6, 34, 60, 86, 112, 138]);
  assert.deepEqual(alignmentCentres(40), [6, 30, 58, 86, 114, 142, 170]);
});

test('codewords and byte capacity at level M', () => {
  assert.deepEqual(codewords(1), { total: 26, data: 16 });
  assert.deepEqual(codewords(7), { total: 196, data: 124 });
  assert.deepEqual(codewords(40), { total: 3706, data: 2334 });
  assert.deepEqual([1, 2, 9, 10, 40].map(capacity), [14, 26, 180, 213, 2331]);
});

test('interleaving takes one codeword of each block in turn, short blocks first', () => {
  // Version 5-M: 2 blocks of 43 data codewords, 24 error correction codewords each.
  const data = Array.from({ length: 86 }, (_, i) => i);
  const out = interleaved(data, 5);
  assert.equal(out.length, 134);
  assert.deepEqual(out.slice(0, 4), [0, 43, 1, 44]);
  assert.deepEqual(out.slice(84, 86), [42, 85]);
  assert.deepEqual(out.slice(86, 88), [reedSolomon(data.slice(0, 43), 24)[0], reedSolomon(data.slice(43), 24)[0]]);
  // Version 13-M: 8 blocks of 44 and 1 of 45: the long block's last codeword comes alone.
  const long = Array.from({ length: codewords(13).data }, (_, i) => i & 0xff);
  assert.equal(interleaved(long, 13)[codewords(13).data - 1], long[long.length - 1]);
});

test('the smallest version that holds the bytes (UTF-8), and nothing past version 40', () => {
  assert.equal(encode('a'.repeat(14)).version, 1);
  assert.equal(encode('a'.repeat(15)).version, 2);
  assert.equal(encode('é'.repeat(7)).version, 1, '14 bytes');
  assert.equal(encode('é'.repeat(8)).version, 2, '16 bytes');
  assert.equal(encode('a'.repeat(2331)).version, 40);
  assert.throws(() => encode('a'.repeat(2332)), RangeError);
});

/** Reads the 15 format bits of a symbol at its two places. */
function formatCopies(dark) {
  const size = dark.length;
  const first = [];
  for (let i = 0; i <= 5; i++) first.push(dark[i][8]);
  first.push(dark[7][8], dark[8][8], dark[8][7]);
  for (let i = 9; i < 15; i++) first.push(dark[8][14 - i]);
  const second = [];
  for (let i = 0; i < 8; i++) second.push(dark[8][size - 1 - i]);
  for (let i = 8; i < 15; i++) second.push(dark[size - 15 + i][8]);
  const number = (bits) => bits.reduce((n, bit, i) => n | (Number(bit) << i), 0);
  return [number(first), number(second)];
}

test('finders, timing, dark module and both format copies are in place', () => {
  for (const text of ['a', 'https://example.org/phone.html#relay=x&id=y&key=z', 'x'.repeat(500)]) {
    const code = encode(text);
    const { size, dark } = code;
    assert.equal(size, 4 * code.version + 17);
    for (const [top, left] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
      const row = (r) => dark[top + r].slice(left, left + 7).map(Number).join('');
      assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(row), [
        '1111111', '1000001', '1011101', '1011101', '1011101', '1000001', '1111111',
      ]);
    }
    for (let i = 8; i < size - 8; i++) {
      assert.equal(dark[6][i], i % 2 === 0);
      assert.equal(dark[i][6], i % 2 === 0);
    }
    assert.equal(dark[size - 8][8], true, 'the dark module');
    assert.deepEqual(formatCopies(dark), [formatBits(code.mask), formatBits(code.mask)]);
  }
});

test('a forced mask is used and named; the chosen one has the least penalty', () => {
  const text = 'https://example.org/';
  const masked = [0, 1, 2, 3, 4, 5, 6, 7].map((mask) => encode(text, mask));
  masked.forEach((code, mask) => assert.equal(code.mask, mask));
  const distinct = new Set(masked.map((code) => code.dark.flat().map(Number).join('')));
  assert.equal(distinct.size, 8);
  assert.ok(masked.some((code) => code.dark.flat().join() === encode(text).dark.flat().join()));
});

test('base64url round trip, and anything else refused', () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = toBase64url(bytes);
  assert.match(text, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(fromBase64url(text), bytes);
  assert.throws(() => fromBase64url('a+b/'));
});

test('a phone link carries relay, id and key in its fragment only', async () => {
  const channel = await newChannel();
  const link = await phoneLink('https://pages.example/phone.html', 'https://relay.example', channel);
  const url = new URL(link);
  assert.equal(url.origin + url.pathname + url.search, 'https://pages.example/phone.html');
  const read = await readLink(url.hash);
  assert.equal(read.relay, 'https://relay.example');
  assert.equal(read.id, channel.id);
  assert.equal(await open(read, await seal(channel, 'token-1')), 'token-1');
  await assert.rejects(readLink('#relay=x&id=y'));
  await assert.rejects(readLink(url.hash.replace(/key=[^&]+/, 'key=AAAA')));
});

test('sealed tokens open only with their key and channel id, unaltered', async () => {
  const channel = await newChannel();
  const sealed = await seal(channel, 'secret token');
  assert.equal(sealed.length, 12 + 'secret token'.length + 16);
  assert.equal(await open(channel, sealed), 'secret token');
  await assert.rejects(open({ ...channel, id: 'another' }, sealed));
  await assert.rejects(open(await newChannel(), sealed));
  const altered = sealed.slice();
  altered[20] ^= 1;
  await assert.rejects(open(channel, altered));
  assert.notDeepEqual(await seal(channel, 'secret token'), sealed, 'a fresh IV each time');
});
