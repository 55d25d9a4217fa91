// A one-node ONNX graph, y = MatMul(x, Wᵀ) with Wᵀ as an initializer, written with onnx-proto: the
// onnxruntime-web baseline of bench:kernels runs it on the same weights as our kernels.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** w is [N, K] row-major (our layout); the graph stores its transpose [K, N] as MatMul wants. */
export function matmulModel(w: Float32Array, n: number, k: number): Uint8Array {
  const wt = new Float32Array(k * n);
  for (let row = 0; row < n; row++) for (let col = 0; col < k; col++) wt[col * n + row] = w[row * k + col]!;
  const float = onnx.TensorProto.DataType.FLOAT;
  const dim = (d: number | string) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const valueInfo = (name: string, dims: (number | string)[]) => ({
    name,
    type: { tensorType: { elemType: float, shape: { dim: dims.map(dim) } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'aigrid-bench',
    graph: {
      name: 'matmul',
      node: [{ opType: 'MatMul', input: ['x', 'wt'], output: ['y'], name: 'matmul' }],
      initializer: [{ name: 'wt', dataType: float, dims: [k, n], rawData: new Uint8Array(wt.buffer) }],
      input: [valueInfo('x', ['M', k])],
      output: [valueInfo('y', ['M', n])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
