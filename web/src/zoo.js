// The zoo in the page: the models of models.json on onnxruntime-web, as window.zoo.
//
//   await zoo.list()                          -> [{name, task, group, labels, inputs, bytes, ...}]
//   await zoo.predict("cnn", image)           -> {label, score, probs, latency_ms, backend}
//   await zoo.predict("changer", a, b)        -> ... plus changes, params, refined: false
//
// An image is a URL, a Blob (a File) or an ImageBitmap. The meanings are zoo predict --json's; the changer's
// params are the network's estimate (zoo in Python also refines them by aligning the views: zoo/align.py).
import * as P from './preprocess.js';

const MODEL_CACHE = 'zoo-models';
const state = { catalog: null, ort: null, backend: null, sessions: new Map(), loading: new Map() };
const listeners = new Set();

/** Call `fn(event)` on model loading events: {name, phase: 'download'|'cached'|'session'|'ready', loaded, total}. */
export function onProgress(fn) { listeners.add(fn); return () => listeners.delete(fn); }
function emit(event) { for (const fn of listeners) fn(event); }

function here(path) { return new URL(path, document.baseURI).href; }

/** The models the site holds, in zoo.list() order, each with its card's facts. */
export async function catalog() {
  if (!state.catalog) {
    const response = await fetch(here('models.json'));
    if (!response.ok) throw new Error(`models.json could not be read (HTTP ${response.status}); rebuild the site with python -m export web OUT/`);
    state.catalog = await response.json();
  }
  return state.catalog;
}

export async function list() { return (await catalog()).models; }

async function entry(name) {
  const models = await list();
  const found = models.find((m) => m.name === name);
  if (!found) throw new Error(`no model named ${JSON.stringify(name)}; the site has ${models.map((m) => m.name).join(', ')}`);
  return found;
}

function wanted() {
  const asked = new URLSearchParams(location.search).get('backend');
  if (asked && asked !== 'wasm' && asked !== 'webgpu') throw new Error(`backend=${asked} is not known; use wasm or webgpu`);
  return asked;
}

/** onnxruntime-web, its WebGPU build where the browser has an adapter (and ?backend=wasm does not refuse it). */
async function runtime() {
  if (state.ort) return state.ort;
  const asked = wanted();
  let adapter = null;
  if (asked !== 'wasm' && navigator.gpu) {
    try { adapter = await navigator.gpu.requestAdapter(); } catch { adapter = null; }
  }
  const ort = adapter ? await import('./ort/ort.webgpu.min.mjs') : await import('./ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = here('ort/');
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.logLevel = 'error';
  state.ort = ort;
  state.backend = adapter ? 'webgpu' : 'wasm';
  return ort;
}

/** What runs the models: the execution provider, threads, SIMD and the runtime's version. */
export async function backend() {
  const ort = await runtime();
  return {
    provider: state.backend,
    threads: ort.env.wasm.numThreads,
    simd: true, // onnxruntime-web ships SIMD builds only
    crossOriginIsolated: !!self.crossOriginIsolated,
    version: ort.env.versions ? ort.env.versions.web : (await catalog()).onnxruntime_web,
  };
}

async function sha256(bytes) {
  if (!crypto.subtle) return null; // not a secure context: the browser offers no digest
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The model's file: from the browser's cache when it was fetched before, else downloaded with progress. */
async function modelBytes(model) {
  const url = here(model.file);
  const cache = self.caches ? await caches.open(MODEL_CACHE) : null;
  const cached = cache ? await cache.match(url) : null;
  if (cached) {
    emit({ name: model.name, phase: 'cached', loaded: model.bytes, total: model.bytes });
    return { bytes: new Uint8Array(await cached.arrayBuffer()), from: 'cache' };
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${model.file} could not be downloaded (HTTP ${response.status})`);
  const total = Number(response.headers.get('content-length')) || model.bytes;
  const reader = response.body.getReader();
  const bytes = new Uint8Array(model.bytes);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > bytes.length) throw new Error(`${model.file} is larger than models.json says (${model.bytes} bytes); rebuild the site`);
    bytes.set(value, loaded);
    loaded += value.length;
    emit({ name: model.name, phase: 'download', loaded, total });
  }
  if (loaded !== model.bytes) throw new Error(`${model.file} has ${loaded} bytes, models.json says ${model.bytes}; rebuild the site`);
  const digest = await sha256(bytes);
  if (digest && digest !== model.sha256) throw new Error(`${model.file} does not match its sha256 in models.json; rebuild the site`);
  // A browser short of disk refuses to keep the file: the model still runs, and is downloaded again next time.
  if (cache) {
    await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }))
      .catch((error) => console.warn(`${model.file} is not kept in the browser's cache: ${error}`));
  }
  return { bytes, from: 'network' };
}

/** The model's session, loaded once; `timing` (ms): download or cache read, session creation. */
export async function load(name) {
  if (state.sessions.has(name)) return state.sessions.get(name);
  if (!state.loading.has(name)) {
    state.loading.set(name, (async () => {
      const model = await entry(name);
      const ort = await runtime();
      const began = performance.now();
      const { bytes, from } = await modelBytes(model);
      const fetched = performance.now();
      emit({ name, phase: 'session', loaded: model.bytes, total: model.bytes });
      const options = { graphOptimizationLevel: 'all', extra: { session: model.session_config || {} } };
      let session = null;
      let provider = 'wasm';
      let rejected = null;
      if (state.backend === 'webgpu') {
        try {
          const candidate = await ort.InferenceSession.create(bytes, { ...options, executionProviders: ['webgpu', 'wasm'] });
          rejected = await checked(model, candidate);
          if (rejected) await candidate.release(); else { session = candidate; provider = 'webgpu'; }
        } catch (error) {
          rejected = `the WebGPU session failed (${error.message || error})`;
        }
        if (rejected) console.warn(`${name}: ${rejected}; running it on WASM`);
      }
      if (!session) session = await ort.InferenceSession.create(bytes, { ...options, executionProviders: ['wasm'] });
      const loaded = { model, session, provider, from, rejected, timing: { fetch_ms: fetched - began, session_ms: performance.now() - fetched } };
      state.sessions.set(name, loaded);
      emit({ name, phase: 'ready', loaded: model.bytes, total: model.bytes });
      return loaded;
    })());
  }
  try {
    return await state.loading.get(name);
  } finally {
    state.loading.delete(name);
  }
}

/** Why a session is not to be trusted, or null: it runs the model's first shipped test vector (the site's
 *  models/NAME-check.json) and compares the probabilities with the shipped ones. */
async function checked(model, session) {
  const response = await fetch(here(model.check));
  if (!response.ok) return `its check ${model.check} could not be read (HTTP ${response.status})`;
  const check = await response.json();
  const feeds = {};
  for (const [k, v] of Object.entries(check.inputs)) {
    feeds[k] = new state.ort.Tensor('uint8', Uint8Array.from(atob(v.data), (c) => c.charCodeAt(0)), v.dims);
  }
  const outputs = await session.run(feeds);
  const got = model.task === 'image-classification'
    ? [P.softmax(Array.from(outputs[model.outputs[0]].data))]
    : model.outputs.slice(0, 2).map((o) => Array.from(outputs[o].data));
  let gap = 0;
  got.forEach((row, i) => row.forEach((v, j) => { gap = Math.max(gap, Math.abs(v - check.probabilities[i][j])); }));
  return gap <= check.tolerance ? null : `its test vector's probabilities differ by ${gap.toExponential(1)} (> ${check.tolerance}) on WebGPU`;
}

function canvas(width, height) {
  if (self.OffscreenCanvas) return new OffscreenCanvas(width, height);
  const element = document.createElement('canvas');
  element.width = width; element.height = height;
  return element;
}

function pixels(bitmap) {
  const c = canvas(bitmap.width, bitmap.height);
  const context = c.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  return P.rgbaToRgb(context.getImageData(0, 0, bitmap.width, bitmap.height).data);
}

/** An image (URL, Blob, ImageBitmap) decoded as zoo decodes it for an input of `fit` = [height, width]:
 *  RGB pixels, upright, a large JPEG reduced as the draft would be. */
export async function decode(image, fit = null) {
  if (typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap) {
    return { rgb: pixels(image), width: image.width, height: image.height };
  }
  let blob = image;
  if (typeof image === 'string' || image instanceof URL) {
    const response = await fetch(image);
    if (!response.ok) throw new Error(`${image} could not be fetched (HTTP ${response.status})`);
    blob = await response.blob();
  }
  if (!(blob instanceof Blob)) throw new Error('an image is a URL, a Blob (a File) or an ImageBitmap');
  const head = new Uint8Array(await blob.slice(0, 1 << 17).arrayBuffer());
  const jpeg = P.jpegInfo(head);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (error) {
    throw new Error(`the image cannot be decoded (${error.message || error}); give a JPEG, PNG, GIF, BMP or WebP file`);
  }
  const rgb = pixels(bitmap);
  const { width, height } = bitmap;
  bitmap.close();
  // The browser turns the image upright (EXIF orientation) as it decodes it; the draft's reduction works on
  // the stored orientation, so a large JPEG is turned back for it.
  return P.upright(rgb, width, height, jpeg, fit);
}

/** zoo.preprocess.prepare: an image -> the model input, uint8 height x width x 3. */
export async function prepare(image, height, width) {
  const decoded = await decode(image, [height, width]);
  return P.fitToInput(decoded.rgb, decoded.width, decoded.height, height, width);
}

function postprocess(model, outputs) {
  const first = outputs[model.outputs[0]].data;
  if (model.task === 'image-classification') return P.fromProbs(model.labels, P.softmax(Array.from(first)));
  const [classes, changes, params] = model.outputs.map((name) => Array.from(outputs[name].data));
  const prediction = P.fromProbs(model.labels, classes);
  prediction.changes = Object.fromEntries(model.changes.map((n, i) => [n, changes[i]]));
  prediction.params = Object.fromEntries(model.param_names.map((n, i) => [n, params[i]]));
  prediction.refined = false; // the network's estimate: the page does not align the views as zoo/align.py does
  return prediction;
}

/** The model's prediction for its images (the changer: A and B). */
export async function predict(name, ...images) {
  const { model } = await load(name);
  if (images.length !== model.inputs.length) {
    throw new Error(`${name} takes ${model.inputs.length} image${model.inputs.length > 1 ? 's' : ''} (${model.inputs.map((i) => i.name).join(', ')}), not ${images.length}`);
  }
  const arrays = [];
  for (const [k, input] of model.inputs.entries()) arrays.push(await prepare(images[k], input.height, input.width));
  return infer(name, arrays);
}

/** The prediction for prepared inputs (`prepare`'s uint8 arrays, one per model input, in the card's order). */
export async function infer(name, arrays) {
  const { model, session, provider } = await load(name);
  const ort = state.ort;
  const feeds = {};
  model.inputs.forEach((input, k) => { feeds[input.name] = new ort.Tensor('uint8', arrays[k], [1, input.height, input.width, 3]); });
  const began = performance.now();
  const outputs = await session.run(feeds);
  const latency = performance.now() - began;
  return { ...postprocess(model, outputs), latency_ms: latency, backend: provider };
}

/** The graph's raw outputs for given uint8 inputs ({input name: {data: Uint8Array, dims}}): the test vectors. */
export async function run(name, inputs) {
  const { session } = await load(name);
  const ort = state.ort;
  const feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, new ort.Tensor('uint8', v.data, v.dims)]));
  const outputs = await session.run(feeds);
  return Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, { data: Array.from(t.data), dims: t.dims }]));
}

export { P as preprocess };
