// The page: the Gradio demo's tabs (zoo/app.py) on window.zoo.
import * as zoo from './zoo.js';

window.zoo = zoo;

const DEMOS = {
  carplane: ['Car or plane', 'Is it a car or a plane? The models trained for it three ways, and their int8 variants, side by side: each one\'s label and probability, with its test accuracy.'],
  cifar10: ['CIFAR-10', 'A plain CNN and the same network with deformable convolutions, side by side.'],
  changer: ['Changer', 'Two views of one scene: which changes (shift, rotation, zoom) turn A into B, and by how much? Give both, or one photo and make B from it with the sliders.'],
};
const $ = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const pct = (p) => `${(100 * p).toFixed(1)}%`;

/** Service worker first: it makes the page cross-origin isolated (threads) and keeps it for offline use. */
async function isolate() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  let registration;
  try {
    registration = await navigator.serviceWorker.register('sw.js');
  } catch (error) { // offline with the worker already installed, or a browser that refuses it: go on without
    console.warn(`the service worker could not be registered (${error.message || error})`);
    return;
  }
  if (!self.crossOriginIsolated && !sessionStorage.getItem('zoo-reloaded')) {
    await navigator.serviceWorker.ready;
    if (registration.active) {
      sessionStorage.setItem('zoo-reloaded', '1'); // once: a browser that refuses isolation keeps one thread
      location.reload();
      await new Promise(() => {});
    }
  }
}

/** A drop zone: drop, pick or take a photo; `changed(blob)` on each new image. */
function imageInput(id, title, changed) {
  const preview = $('div', { class: 'preview' });
  const file = $('input', { type: 'file', accept: 'image/*', id: `${id}-file` });
  const camera = $('input', { type: 'file', accept: 'image/*', capture: 'environment', hidden: '' });
  const zone = $('div', { class: 'drop', id },
    $('strong', {}, title), preview,
    $('div', { class: 'buttons' }, file,
      $('button', { type: 'button', onclick: () => takePhoto(zone, set) }, 'Camera')),
    camera);
  let current = null;
  function set(blob) {
    current = blob;
    const img = $('img', { alt: title, src: URL.createObjectURL(blob) });
    preview.replaceChildren(img);
    changed(blob);
  }
  file.addEventListener('change', () => file.files[0] && set(file.files[0]));
  camera.addEventListener('change', () => camera.files[0] && set(camera.files[0]));
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => { e.preventDefault(); zone.classList.remove('over'); if (e.dataTransfer.files[0]) set(e.dataTransfer.files[0]); });
  return { zone, get: () => current, set };
}

/** A photo from the camera: getUserMedia where the browser has it, else the file picker's capture. */
async function takePhoto(zone, set) {
  if (!navigator.mediaDevices?.getUserMedia) { zone.querySelector('input[capture]').click(); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } }); } catch (error) {
    zone.querySelector('input[capture]').click(); return;
  }
  const video = $('video', { autoplay: '', playsinline: '' });
  video.srcObject = stream;
  const snap = $('button', { type: 'button' }, 'Take it');
  zone.append(video, snap);
  snap.addEventListener('click', () => {
    const c = document.createElement('canvas');
    c.width = video.videoWidth; c.height = video.videoHeight;
    c.getContext('2d').drawImage(video, 0, 0);
    stream.getTracks().forEach((t) => t.stop());
    video.remove(); snap.remove();
    c.toBlob((blob) => set(blob), 'image/png');
  });
}

function bars(probs, top = 5) {
  return Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, top).map(([label, p]) =>
    $('div', { class: 'bar' }, $('span', {}, label), $('span', { class: 'fill', style: `width:${Math.max(1, 150 * p)}px` }), $('span', {}, pct(p))));
}

/** A model's card in a tab: pick it to download it, then its result on each prediction. */
function modelCard(model) {
  const check = $('input', { type: 'checkbox', id: `use-${model.name}`, class: 'use' });
  const progress = $('progress', { max: model.bytes, value: 0, hidden: '' });
  const result = $('div', { class: 'result', id: `result-${model.name}` });
  const acc = model.test_accuracy != null ? `test accuracy ${pct(model.test_accuracy)} · ` : '';
  const card = $('div', { class: 'model', id: `model-${model.name}` },
    $('h3', {}, $('label', {}, check, ' ', model.name)),
    $('div', { class: 'meta' }, `${acc}${model.inputs[0].width}×${model.inputs[0].height} · ${mb(model.bytes)}`),
    progress, result);
  zoo.onProgress((e) => {
    if (e.name !== model.name) return;
    progress.hidden = e.phase === 'ready';
    progress.value = e.loaded;
    if (e.phase === 'session') result.textContent = 'Starting the model…';
    if (e.phase === 'ready') result.textContent = 'Ready.';
  });
  check.addEventListener('change', async () => {
    if (!check.checked) return;
    try {
      const { from, timing, provider, rejected } = await zoo.load(model.name);
      result.textContent = `Ready (${from === 'cache' ? 'from the browser\'s cache' : 'downloaded'} in ${timing.fetch_ms.toFixed(0)} ms, started in ${timing.session_ms.toFixed(0)} ms, ${provider.toUpperCase()}${rejected ? `: not WebGPU, ${rejected}` : ''}).`;
    } catch (error) {
      result.replaceChildren($('span', { class: 'error' }, String(error.message || error)));
    }
  });
  return { card, check, result, model };
}

/** A warped by the estimated change (zoo.geometry.warp_like_b), beside B: where they agree, the estimate holds. */
async function warpedStrip(a, b, params) {
  const size = 192;
  const views = [];
  for (const image of [a, b]) {
    const decoded = await zoo.decode(image);
    views.push(zoo.preprocess.fitToInput(decoded.rgb, decoded.width, decoded.height, size, size));
  }
  const warped = zoo.preprocess.viewFrom(views[0], size, size, [size / 2, size / 2], size, size,
    { shiftX: params.shift_x, shiftY: params.shift_y, angle: params.angle, scale: params.scale });
  const strip = $('div', { class: 'strip' });
  for (const [rgb, caption] of [[warped, 'A, warped by the estimate'], [views[1], 'B']]) {
    const c = document.createElement('canvas');
    c.width = c.height = size;
    const rgba = new Uint8ClampedArray(size * size * 4);
    for (let i = 0; i < size * size; i++) { rgba.set(rgb.subarray(3 * i, 3 * i + 3), 4 * i); rgba[4 * i + 3] = 255; }
    c.getContext('2d').putImageData(new ImageData(rgba, size, size), 0, 0);
    strip.append($('figure', {}, c, $('figcaption', {}, caption)));
  }
  return strip;
}

function showPrediction(target, p) {
  const parts = [$('div', { class: 'label' }, p.label), ...bars(p.probs)];
  if (p.changes) {
    parts.push($('div', {}, $('strong', {}, 'Changes')), ...bars(p.changes, 3));
    const q = p.params;
    parts.push($('pre', { class: 'params' },
      `shift x ${q.shift_x.toFixed(3)} · shift y ${q.shift_y.toFixed(3)} (of the side)\nangle ${q.angle.toFixed(1)}° · scale ${q.scale.toFixed(3)}\nrefined: false (the network's estimate)`));
  }
  parts.push($('div', { class: 'latency' }, `${p.backend.toUpperCase()} · ${p.latency_ms.toFixed(1)} ms`));
  target.replaceChildren(...parts);
}

async function runAll(cards, images) {
  const chosen = cards.filter((c) => c.check.checked);
  if (!chosen.length) { cards[0].check.checked = true; chosen.push(cards[0]); }
  for (const c of chosen) {
    try {
      const p = await zoo.predict(c.model.name, ...images);
      showPrediction(c.result, p);
      if (p.params) c.result.append(await warpedStrip(images[0], images[1], p.params));
    } catch (error) {
      c.result.replaceChildren($('span', { class: 'error' }, String(error.message || error)));
    }
  }
}

function classifierTab(panel, group, models) {
  const cards = models.map(modelCard);
  const input = imageInput(`${group}-image`, 'Image', () => {});
  const run = $('button', { class: 'primary', id: `${group}-run`, type: 'button' }, 'Predict');
  run.addEventListener('click', () => {
    if (!input.get()) { cards[0].result.replaceChildren($('span', { class: 'error' }, 'Give an image first.')); return; }
    runAll(cards, [input.get()]);
  });
  panel.append($('div', { class: 'inputs' }, input.zone), run, $('div', { class: 'models' }, ...cards.map((c) => c.card)));
}

function changerTab(panel, group, models) {
  const cards = models.map(modelCard);
  const a = imageInput(`${group}-a`, 'View A', () => {});
  const b = imageInput(`${group}-b`, 'View B', () => {});
  const photo = imageInput(`${group}-photo`, 'One photo (cut A and B from it)', () => {});
  const slider = (id, label, min, max, step, value) => {
    const input = $('input', { type: 'range', id, min, max, step, value });
    const shown = $('span', {}, ` ${value}`);
    input.addEventListener('input', () => { shown.textContent = ` ${input.value}`; });
    return $('label', {}, $('span', {}, label, shown), input);
  };
  const sliders = $('div', { class: 'sliders' },
    slider('shift-x', 'shift x (side)', -0.25, 0.25, 0.01, 0), slider('shift-y', 'shift y (side)', -0.25, 0.25, 0.01, 0),
    slider('angle', 'angle (°, + = counterclockwise)', -30, 30, 1, 0), slider('zoom', 'zoom (scale)', 0.625, 1.6, 0.01, 1));
  const make = $('button', { type: 'button', id: `${group}-make` }, 'Make A and B');
  make.addEventListener('click', async () => {
    window.zooPairMade = false;
    if (!photo.get()) return;
    const value = (id) => Number(sliders.querySelector(`#${id}`).value);
    const image = await zoo.decode(photo.get());
    const [va, vb] = zoo.preprocess.pairFromPhoto(image.rgb, image.width, image.height, 256,
      { shiftX: value('shift-x'), shiftY: value('shift-y'), angle: value('angle'), scale: value('zoom') });
    a.set(await toBlob(va, 256)); b.set(await toBlob(vb, 256));
    window.zooPairMade = true;
  });
  const run = $('button', { class: 'primary', id: `${group}-run`, type: 'button' }, 'Detect the change');
  run.addEventListener('click', () => {
    if (!a.get() || !b.get()) { cards[0].result.replaceChildren($('span', { class: 'error' }, 'Give A and B (or a photo, then Make A and B) first.')); return; }
    runAll(cards, [a.get(), b.get()]);
  });
  panel.append($('div', { class: 'inputs' }, a.zone, b.zone, photo.zone), sliders, make, $('br'), run,
    $('div', { class: 'models' }, ...cards.map((c) => c.card)));
}

function toBlob(rgb, size) {
  const rgba = new Uint8ClampedArray(size * size * 4);
  for (let i = 0; i < size * size; i++) { rgba.set(rgb.subarray(3 * i, 3 * i + 3), 4 * i); rgba[4 * i + 3] = 255; }
  const c = document.createElement('canvas');
  c.width = c.height = size;
  c.getContext('2d').putImageData(new ImageData(rgba, size, size), 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, 'image/png'));
}

function modelsTab(panel, models) {
  const rows = models.map((m) => $('tr', {},
    $('td', {}, m.name), $('td', {}, m.task), $('td', {}, m.inputs.map((i) => `${i.width}×${i.height}`).join(' + ')),
    $('td', {}, m.test_accuracy != null ? pct(m.test_accuracy) : '–'), $('td', {}, mb(m.bytes)), $('td', {}, m.group)));
  panel.append($('table', {}, $('tr', {}, ...['model', 'task', 'input', 'test accuracy', 'file', 'tab'].map((h) => $('th', {}, h))), ...rows));
}

async function main() {
  await isolate();
  const models = await zoo.list();
  const groups = new Map(Object.keys(DEMOS).map((g) => [g, []]));
  for (const m of models) { if (!groups.has(m.group)) groups.set(m.group, []); groups.get(m.group).push(m); }
  const tabs = document.getElementById('tabs');
  const panels = document.getElementById('panels');
  const all = [];
  const select = (id) => all.forEach(([button, panel]) => { const on = panel.id === id; button.setAttribute('aria-selected', on); panel.hidden = !on; });
  const addTab = (id, title, intro, fill) => {
    const panel = $('section', { id, role: 'tabpanel' }, intro ? $('p', { class: 'intro' }, intro) : null);
    const button = $('button', { role: 'tab', type: 'button', 'data-tab': id, onclick: () => select(id) }, title);
    tabs.append(button); panels.append(panel); all.push([button, panel]);
    fill(panel);
  };
  for (const [group, members] of groups) {
    if (!members.length) continue;
    const [title, intro] = DEMOS[group] || [group, `${group}: ${members[0].description || ''}`];
    addTab(`tab-${group}`, title, intro, (panel) => (members[0].task === 'change-detection' ? changerTab : classifierTab)(panel, group, members));
  }
  addTab('tab-models', 'Models', 'Every model of the site: its card\'s figures and its file.', (panel) => modelsTab(panel, models));
  select(all[0][1].id);
  const b = await zoo.backend();
  document.getElementById('backend').textContent =
    `onnxruntime-web ${b.version} · ${b.provider === 'webgpu' ? 'WebGPU (WASM where an operator needs it)' : 'WASM'} · ${b.threads} thread${b.threads > 1 ? 's' : ''}, SIMD · ${b.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated (one thread)'}`;
  window.zooReady = true;
}

main().catch((error) => {
  document.getElementById('backend').replaceChildren($('span', { class: 'error' }, `The page could not start: ${error.message || error}`));
  window.zooError = String(error.message || error);
});
