// ONNX Runtime side of bench/infer.sh: inference of one ONNX file on the CPU,
// with the same batch, timing rule (3 warm-up batches, median of ITERS) and
// thread count as bench-cnn --model.
// Usage: node bench_ort.js MODULES_DIR MODEL.onnx BATCH ITERS THREADS
'use strict';
const path = require('path');

async function main() {
  const [modulesDir, model, batchS, itersS, threadsS] = process.argv.slice(2);
  if (!threadsS) {
    console.error('usage: node bench_ort.js MODULES_DIR MODEL.onnx BATCH ITERS THREADS');
    process.exit(2);
  }
  const ort = require(path.join(modulesDir, 'onnxruntime-node'));
  const batch = Number(batchS), iters = Number(itersS), threads = Number(threadsS);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  // The input shape comes from the model's own metadata (first dimension is the batch).
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  let chw = meta && meta.shape ? meta.shape.slice(1) : null;
  if (!chw || chw.some((d) => typeof d !== 'number')) chw = JSON.parse(process.env.BENCH_INPUT_CHW || 'null');
  if (!chw) throw new Error(`${model}: input shape unknown (set BENCH_INPUT_CHW=[C,H,W])`);
  const n = batch * chw.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  let s = 7;
  for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; x[i] = (s / 4294967296) * 2 - 1; }
  const feeds = { [name]: new ort.Tensor('float32', x, [batch, ...chw]) };
  const t = [];
  for (let i = -3; i < iters; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    if (i >= 0) t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  t.sort((a, b) => a - b);
  const med = iters % 2 ? t[(iters - 1) / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2;
  const version = require(path.join(modulesDir, 'onnxruntime-node', 'package.json')).version;
  console.log(JSON.stringify({ engine: `onnxruntime ${version}`, batch, iters, threads,
                               infer_images_per_s: +(batch / med).toFixed(1) }));
}
main().catch((e) => { console.error('bench_ort:', e.message); process.exit(1); });
