// zoo's preprocessing rule (zoo/preprocess.py) on decoded pixels, with no DOM: the page and node's tests share it.
//
// An image becomes a model input as zoo makes it: EXIF orientation applied, a large JPEG reduced as Pillow's
// draft decoding would (the scale 1/2, 1/4 or 1/8 that still covers DRAFT_MARGIN times the input on each side),
// transparent pixels shown on white, scaled to cover the input with Pillow's antialiased bilinear filter (its
// fixed-point arithmetic, ported below), the centre cut out, uint8 RGB in NHWC order.

/** How many times the model's input side a JPEG's draft decoding keeps, at least (zoo.preprocess.DRAFT_MARGIN). */
export const DRAFT_MARGIN = 8;

const PRECISION_BITS = 32 - 8 - 2; // Pillow's Resample.c, 8 bits per channel

/** The JPEG facts zoo's decoding depends on, read from the file's markers: stored size and EXIF orientation.
 *  Returns null for anything that is not a JPEG. */
export function jpegInfo(bytes) {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let at = 2;
  let orientation = 1;
  let size = null;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) break;
    const marker = bytes[at + 1];
    if (marker === 0xff) { at += 1; continue; }
    if (marker === 0xd9 || marker === 0xda) break; // end of image, or the first scan: the header is over
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { at += 2; continue; }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    const start = at + 4;
    if (marker === 0xe1 && orientation === 1) orientation = exifOrientation(bytes, start, at + 2 + length);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc && !size) {
      size = { height: (bytes[start + 1] << 8) | bytes[start + 2], width: (bytes[start + 3] << 8) | bytes[start + 4] };
    }
    at += 2 + length;
  }
  return size ? { ...size, orientation } : null;
}

/** The orientation tag (0x0112) of an APP1 Exif segment spanning bytes[start:end]; 1 when absent or unreadable. */
export function exifOrientation(bytes, start, end) {
  const exif = [0x45, 0x78, 0x69, 0x66, 0, 0];
  if (end - start < 14 || exif.some((b, i) => bytes[start + i] !== b)) return 1;
  const tiff = start + 6;
  const little = bytes[tiff] === 0x49;
  const u16 = (p) => (little ? bytes[p] | (bytes[p + 1] << 8) : (bytes[p] << 8) | bytes[p + 1]);
  const u32 = (p) => (little ? u16(p) + u16(p + 2) * 65536 : u16(p) * 65536 + u16(p + 2));
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > end) break;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

/** The scale (1, 2, 4 or 8) at which Pillow's draft decodes a width x height JPEG for a model input of `fit`
 *  = [height, width] (zoo.preprocess._draft: the side asked for is DRAFT_MARGIN times the larger input side). */
export function draftScale(width, height, fit) {
  const side = DRAFT_MARGIN * Math.max(fit[0], fit[1]);
  const scale = Math.min(Math.floor(width / side), Math.floor(height / side));
  for (const s of [8, 4, 2]) if (scale >= s) return s;
  return 1;
}

/** RGB pixels reduced by `s` in each direction, each output pixel the mean of its s x s box (edge boxes: of the
 *  pixels there are), to ceil(width / s) x ceil(height / s): how the page stands in for libjpeg's scaled IDCT. */
export function reduce(rgb, width, height, s) {
  if (s === 1) return { rgb, width, height };
  const w = Math.ceil(width / s);
  const h = Math.ceil(height / s);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const y1 = Math.min(height, (y + 1) * s);
    for (let x = 0; x < w; x++) {
      const x1 = Math.min(width, (x + 1) * s);
      let r = 0, g = 0, b = 0, n = 0;
      for (let yy = y * s; yy < y1; yy++) {
        for (let xx = x * s; xx < x1; xx++) {
          const p = (yy * width + xx) * 3;
          r += rgb[p]; g += rgb[p + 1]; b += rgb[p + 2]; n++;
        }
      }
      const o = (y * w + x) * 3;
      out[o] = Math.round(r / n); out[o + 1] = Math.round(g / n); out[o + 2] = Math.round(b / n);
    }
  }
  return { rgb: out, width: w, height: h };
}

/** RGB pixels turned as EXIF orientation `o` (1-8) says, as Pillow's ImageOps.exif_transpose does. */
export function orient(rgb, width, height, o) {
  if (o === 1) return { rgb, width, height };
  const swap = o >= 5;
  const w = swap ? height : width;
  const h = swap ? width : height;
  const source = {
    2: (x, y) => [width - 1 - x, y],
    3: (x, y) => [width - 1 - x, height - 1 - y],
    4: (x, y) => [x, height - 1 - y],
    5: (x, y) => [y, x],
    6: (x, y) => [y, height - 1 - x],
    7: (x, y) => [width - 1 - y, height - 1 - x],
    8: (x, y) => [width - 1 - y, x],
  }[o];
  if (!source) throw new Error(`EXIF orientation ${o} is not one of 1-8`);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [sx, sy] = source(x, y);
      const p = (sy * width + sx) * 3;
      const q = (y * w + x) * 3;
      out[q] = rgb[p]; out[q + 1] = rgb[p + 1]; out[q + 2] = rgb[p + 2];
    }
  }
  return { rgb: out, width: w, height: h };
}

/** RGBA (not premultiplied) to RGB, transparent pixels shown on white as zoo shows them. */
export function rgbaToRgb(rgba) {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[4 * i + c];
      out[3 * i + c] = a === 255 ? v : Math.round((v * a + 255 * (255 - a)) / 255);
    }
  }
  return out;
}

function bilinear(x) {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

/** Pillow's precompute_coeffs and normalize_coeffs_8bpc: each output pixel's first source pixel, count and
 *  fixed-point weights, for the source span [in0, in1) of an input of inSize pixels. */
export function coefficients(inSize, in0, in1, outSize) {
  const scale = (in1 - in0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bilinear((x + xmin - center + 0.5) * ss);
      kk[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) kk[xx * ksize + x] /= ww;
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  const fixed = new Int32Array(kk.length);
  for (let i = 0; i < kk.length; i++) {
    fixed[i] = kk[i] < 0 ? Math.trunc(-0.5 + kk[i] * (1 << PRECISION_BITS)) : Math.trunc(0.5 + kk[i] * (1 << PRECISION_BITS));
  }
  return { ksize, bounds, kk: fixed };
}

function clip8(v) {
  if (v >= (1 << PRECISION_BITS) * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/** Pillow's Image.resize((outW, outH), BILINEAR, box) of RGB pixels: horizontal pass, then vertical, each
 *  rounded to 8 bits, exactly as Resample.c computes them. */
export function resize(rgb, width, height, outW, outH, box = [0, 0, width, height]) {
  const needH = outW !== width || box[0] !== 0 || box[2] !== outW;
  const needV = outH !== height || box[1] !== 0 || box[3] !== outH;
  const horiz = coefficients(width, box[0], box[2], outW);
  const vert = coefficients(height, box[1], box[3], outH);
  const first = vert.bounds[0];
  const last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
  let src = rgb, sw = width, sh = height;
  const vbounds = Int32Array.from(vert.bounds);
  const half = 1 << (PRECISION_BITS - 1);
  if (needH) {
    for (let i = 0; i < outH; i++) vbounds[2 * i] -= first;
    const rows = last - first;
    const tmp = new Uint8Array(outW * rows * 3);
    for (let y = 0; y < rows; y++) {
      const row = (y + first) * width * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[2 * xx];
        const xmax = horiz.bounds[2 * xx + 1];
        const k = xx * horiz.ksize;
        let s0 = half, s1 = half, s2 = half;
        for (let x = 0; x < xmax; x++) {
          const w = horiz.kk[k + x];
          const p = row + (x + xmin) * 3;
          s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
        }
        const o = (y * outW + xx) * 3;
        tmp[o] = clip8(s0); tmp[o + 1] = clip8(s1); tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp; sw = outW; sh = rows;
  } else {
    // Pillow crops the rows the vertical pass reads instead; the bounds then stay as they are with first = 0.
    src = rgb.subarray(first * width * 3, last * width * 3);
    for (let i = 0; i < outH; i++) vbounds[2 * i] -= first;
    sh = last - first;
  }
  if (!needV) return src.length === outW * outH * 3 ? Uint8Array.from(src) : Uint8Array.from(src.subarray(0, outW * outH * 3));
  const out = new Uint8Array(sw * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vbounds[2 * yy];
    const ymax = vert.bounds[2 * yy + 1];
    const k = yy * vert.ksize;
    for (let x = 0; x < sw; x++) {
      let s0 = half, s1 = half, s2 = half;
      for (let y = 0; y < ymax; y++) {
        const w = vert.kk[k + y];
        const p = ((y + ymin) * sw + x) * 3;
        s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
      }
      const o = (yy * sw + x) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  void sh;
  return out;
}

/** The source box that Pillow's ImageOps.fit(image, (outW, outH)) resizes: the centred crop with the output's
 *  aspect ratio, in float pixels. */
export function coverBox(width, height, outW, outH) {
  const liveRatio = width / height;
  const outputRatio = outW / outH;
  let cropW, cropH;
  if (liveRatio === outputRatio) { cropW = width; cropH = height; }
  else if (liveRatio >= outputRatio) { cropW = outputRatio * height; cropH = height; }
  else { cropW = width; cropH = width / outputRatio; }
  const left = (width - cropW) * 0.5;
  const top = (height - cropH) * 0.5;
  return [left, top, left + cropW, top + cropH];
}

/** zoo.preprocess.fit_to_input with the center-crop policy: RGB pixels -> uint8 outH x outW x 3. */
export function fitToInput(rgb, width, height, outH, outW) {
  if (width === outW && height === outH) return Uint8Array.from(rgb);
  return resize(rgb, width, height, outW, outH, coverBox(width, height, outW, outH));
}

/** The inverse of EXIF orientation `o`: the orientation that turns an upright image back as it is stored. */
export function unorient(o) {
  return o === 6 ? 8 : o === 8 ? 6 : o;
}

/** Upright RGB pixels of a file (the browser applied its EXIF orientation) as zoo sees them before the resize:
 *  a large JPEG reduced as Pillow's draft would reduce it (`jpeg`: jpegInfo of the file, or null; `fit`: the
 *  input's [height, width]), in the stored orientation as the draft works, then upright again. */
export function upright(rgb, width, height, jpeg, fit) {
  if (!jpeg || !fit) return { rgb, width, height };
  const s = draftScale(jpeg.width, jpeg.height, fit);
  if (s === 1) return { rgb, width, height };
  const stored = orient(rgb, width, height, unorient(jpeg.orientation));
  const reduced = reduce(stored.rgb, stored.width, stored.height, s);
  return orient(reduced.rgb, reduced.width, reduced.height, jpeg.orientation);
}

function affineSample(rgb, width, height, xin, yin, out, o) {
  if (xin < 0 || xin >= width || yin < 0 || yin >= height) { out[o] = out[o + 1] = out[o + 2] = 0; return; }
  xin -= 0.5; yin -= 0.5;
  const x = Math.floor(xin), y = Math.floor(yin);
  const dx = xin - x, dy = yin - y;
  const clipX = (v) => Math.min(Math.max(v, 0), width - 1);
  const y0 = Math.min(Math.max(y, 0), height - 1);
  const x0 = clipX(x) * 3, x1 = clipX(x + 1) * 3;
  for (let c = 0; c < 3; c++) {
    const r0 = y0 * width * 3;
    const a = rgb[r0 + x0 + c], b = rgb[r0 + x1 + c];
    let v1 = a + (b - a) * dx;
    let v2 = v1;
    if (y + 1 >= 0 && y + 1 < height) {
      const r1 = (y + 1) * width * 3;
      const a2 = rgb[r1 + x0 + c], b2 = rgb[r1 + x1 + c];
      v2 = a2 + (b2 - a2) * dx;
    }
    const v = v1 + (v2 - v1) * dy;
    out[o + c] = v < 0 ? 0 : v >= 255 ? 255 : Math.trunc(v); // Pillow truncates here
  }
}

/** zoo.geometry.view_from: the size x size view that B shows if A is the side x side square at `centre`
 *  (source pixels), after the change (shift as fractions of the side, angle in degrees, scale). */
export function viewFrom(rgb, width, height, centre, side, size, { shiftX = 0, shiftY = 0, angle = 0, scale = 1 } = {}) {
  const t = angle * (Math.PI / 180);
  const f = side / size;
  const a = (Math.cos(t) / scale) * f, b = (-Math.sin(t) / scale) * f;
  const d = (Math.sin(t) / scale) * f, e = (Math.cos(t) / scale) * f;
  const tx = shiftX * size, ty = shiftY * size;
  const c = centre[0] - a * (size / 2 + tx) - b * (size / 2 + ty);
  const g = centre[1] - d * (size / 2 + tx) - e * (size / 2 + ty);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const xi = x + 0.5, yi = y + 0.5;
      affineSample(rgb, width, height, a * xi + b * yi + c, d * xi + e * yi + g, out, (y * size + x) * 3);
    }
  }
  return out;
}

/** zoo.geometry.pair_from_photo: A (centred) and B (after the change), each size x size, cut from one photo. */
export function pairFromPhoto(rgb, width, height, size, change = {}, viewFraction = 0.4) {
  const side = viewFraction * Math.min(width, height);
  const centre = [width / 2, height / 2];
  return [viewFrom(rgb, width, height, centre, side, size), viewFrom(rgb, width, height, centre, side, size, change)];
}

/** A classifier's logits -> probabilities, computed in double precision as zoo.model.softmax. */
export function softmax(logits) {
  const max = Math.max(...logits);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((s, v) => s + v, 0);
  return exp.map((v) => v / sum);
}

/** zoo's Prediction from a row of probabilities: the label, its probability, and every label's. */
export function fromProbs(labels, row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  const probs = {};
  labels.forEach((label, i) => { probs[label] = row[i]; });
  return { label: labels[best], score: row[best], probs };
}
