// preprocess.js on its own (no browser): the rules it shares with zoo/preprocess.py. Its agreement with Pillow,
// bit for bit, is tests/test_web.py's (it runs this module under node beside Pillow).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as P from '../src/preprocess.js';

function image(width, height, seed = 1) {
  const rgb = new Uint8Array(width * height * 3);
  let s = seed;
  for (let i = 0; i < rgb.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; rgb[i] = s >> 23; }
  return rgb;
}

/** A JPEG's header, as far as jpegInfo reads it: SOI, an Exif APP1 with the orientation, a baseline SOF. */
function jpegHeader(width, height, orientation, little) {
  const u16 = (v) => (little ? [v & 255, v >> 8] : [v >> 8, v & 255]);
  const u32 = (v) => (little ? [...u16(v & 65535), ...u16(v >>> 16)] : [...u16(v >>> 16), ...u16(v & 65535)]);
  const tiff = [...(little ? [0x49, 0x49] : [0x4d, 0x4d]), ...u16(42), ...u32(8), ...u16(1),
    ...u16(0x0112), ...u16(3), ...u32(1), ...u16(orientation), 0, 0, ...u32(0)];
  const app1 = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff];
  const sof = [8, height >> 8, height & 255, width >> 8, width & 255, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
  return Uint8Array.from([0xff, 0xd8, 0xff, 0xe1, (app1.length + 2) >> 8, (app1.length + 2) & 255, ...app1,
    0xff, 0xc0, (sof.length + 2) >> 8, (sof.length + 2) & 255, ...sof, 0xff, 0xda, 0, 2]);
}

test('jpegInfo reads the stored size and the EXIF orientation, in either byte order', () => {
  for (const little of [false, true]) {
    for (let o = 1; o <= 8; o++) assert.deepEqual(P.jpegInfo(jpegHeader(640, 480, o, little)), { width: 640, height: 480, orientation: o });
  }
  assert.equal(P.jpegInfo(Uint8Array.from([0x89, 0x50, 0x4e, 0x47])), null, 'a PNG is no JPEG');
  const unknown = jpegHeader(20, 10, 9, false);
  assert.equal(P.jpegInfo(unknown).orientation, 1, 'an orientation outside 1-8 is ignored, as Pillow ignores it');
});

test('each orientation turned back (unorient) gives the stored pixels', () => {
  const rgb = image(5, 3);
  for (let o = 1; o <= 8; o++) {
    const up = P.orient(rgb, 5, 3, o);
    assert.deepEqual([up.width, up.height], o >= 5 ? [3, 5] : [5, 3]);
    const back = P.orient(up.rgb, up.width, up.height, P.unorient(o));
    assert.deepEqual([back.width, back.height], [5, 3]);
    assert.deepEqual(back.rgb, rgb, `orientation ${o}`);
  }
});

test('orientation 6 turns the stored image clockwise (Pillow: ROTATE_270)', () => {
  const rgb = Uint8Array.from([1, 1, 1, 2, 2, 2]); // 2 x 1: left 1, right 2
  const up = P.orient(rgb, 2, 1, 6);
  assert.deepEqual([up.width, up.height], [1, 2]);
  assert.deepEqual(Array.from(up.rgb), [1, 1, 1, 2, 2, 2], 'left comes on top');
  const ccw = P.orient(rgb, 2, 1, 8);
  assert.deepEqual(Array.from(ccw.rgb), [2, 2, 2, 1, 1, 1], 'orientation 8: right comes on top');
});

test('the draft scale is the largest of 1/2, 1/4, 1/8 that still covers DRAFT_MARGIN times the input', () => {
  for (const [w, h] of [[300, 200], [512, 512], [1024, 700], [4000, 3000], [12000, 9000], [520, 9000]]) {
    for (const fit of [[32, 32], [64, 64]]) {
      const side = P.DRAFT_MARGIN * Math.max(...fit);
      const s = P.draftScale(w, h, fit);
      assert.ok([1, 2, 4, 8].includes(s));
      assert.ok(s === 1 || (Math.floor(w / s) >= side && Math.floor(h / s) >= side), `${w}x${h} at 1/${s} covers ${side}`);
      if (s < 8) assert.ok(Math.min(Math.floor(w / side), Math.floor(h / side)) < 2 * s, `${w}x${h}: 1/${2 * s} would still cover`);
    }
  }
});

test('reduce averages each box, edge boxes over the pixels they have', () => {
  const rgb = Uint8Array.from([0, 0, 0, 10, 10, 10, 20, 20, 20, 40, 40, 40, 50, 50, 50, 60, 60, 60]); // 3 x 2
  const out = P.reduce(rgb, 3, 2, 2);
  assert.deepEqual([out.width, out.height], [2, 1]);
  assert.deepEqual(Array.from(out.rgb), [25, 25, 25, 40, 40, 40]);
});

test('a constant image stays constant through every resize', () => {
  const rgb = new Uint8Array(37 * 23 * 3).fill(173);
  for (const [oh, ow] of [[32, 32], [64, 64], [7, 50]]) {
    assert.ok(P.fitToInput(rgb, 37, 23, oh, ow).every((v) => v === 173));
  }
});

test('an image already at the input size is passed as it is', () => {
  const rgb = image(32, 32);
  assert.deepEqual(P.fitToInput(rgb, 32, 32, 32, 32), rgb);
  assert.deepEqual(P.resize(rgb, 32, 32, 32, 32), rgb);
});

test('each output pixel\'s fixed-point weights add up to one', () => {
  for (const [n, out] of [[300, 32], [32, 64], [45, 32], [1000, 64]]) {
    const { ksize, bounds, kk } = P.coefficients(n, 0, n, out);
    for (let x = 0; x < out; x++) {
      let sum = 0;
      for (let k = 0; k < bounds[2 * x + 1]; k++) sum += kk[x * ksize + k];
      assert.ok(Math.abs(sum - (1 << 22)) <= ksize, `${n} -> ${out}, pixel ${x}: ${sum}`);
      assert.ok(bounds[2 * x] >= 0 && bounds[2 * x] + bounds[2 * x + 1] <= n);
    }
  }
});

test('the cover box has the input\'s aspect ratio and sits in the centre', () => {
  for (const [w, h] of [[300, 200], [200, 300], [64, 64], [1000, 7]]) {
    const [l, t, r, b] = P.coverBox(w, h, 32, 32);
    assert.ok(Math.abs((r - l) - (b - t)) < 1e-9);
    assert.ok(Math.abs(l - (w - r)) < 1e-9 && Math.abs(t - (h - b)) < 1e-9);
    assert.ok((r - l === w) || (b - t === h), 'one side is kept whole');
  }
});

test('a view with no change of the whole image is the image', () => {
  const rgb = image(16, 16);
  assert.deepEqual(P.viewFrom(rgb, 16, 16, [8, 8], 16, 16), rgb);
  const [a, b] = P.pairFromPhoto(image(100, 60), 100, 60, 24);
  assert.deepEqual(a, b, 'no change: B is A');
});

test('transparent pixels are shown on white, opaque ones as they are', () => {
  assert.deepEqual(Array.from(P.rgbaToRgb(Uint8Array.from([10, 20, 30, 255, 10, 20, 30, 0]))), [10, 20, 30, 255, 255, 255]);
});

test('softmax gives probabilities, and the label is the most probable one', () => {
  const probs = P.softmax([1, 3, -2, 0.5]);
  assert.ok(Math.abs(probs.reduce((s, p) => s + p, 0) - 1) < 1e-12);
  const p = P.fromProbs(['a', 'b', 'c', 'd'], probs);
  assert.equal(p.label, 'b');
  assert.equal(p.score, Math.max(...probs));
  assert.deepEqual(Object.keys(p.probs), ['a', 'b', 'c', 'd']);
});
