// The kernel wrappers one WebGPU backend uses, each built on first use (pipelines are cached by the
// context, so a second backend on the same context compiles nothing again).
import { GatedOp, GeluOp } from '../../../kernels/activation.ts';
import { MoeOp } from '../../../kernels/moe.ts';
import { AddOp } from '../../../kernels/add.ts';
import { AttentionOp } from '../../../kernels/attention.ts';
import type { GpuContext } from '../../../kernels/context.ts';
import { EmbeddingOp } from '../../../kernels/embedding.ts';
import { LayerNormOp } from '../../../kernels/layernorm.ts';
import { LinearOp } from '../../../kernels/linear.ts';
import { RmsNormOp } from '../../../kernels/rmsnorm.ts';
import { RopeOp } from '../../../kernels/rope.ts';
import { RopeAppendOp } from '../../../kernels/rope-append.ts';

export class GpuKernels {
  private linearOp?: LinearOp;
  private addOp?: AddOp;
  private rmsNormOp?: RmsNormOp;
  private layerNormOp?: LayerNormOp;
  private ropeOp?: RopeOp;
  private ropeAppendOp?: RopeAppendOp;
  private swigluOp?: GatedOp;
  private gegluOp?: GatedOp;
  private moeOp?: MoeOp;
  private geluOp?: GeluOp;
  private embeddingOp?: EmbeddingOp;
  private readonly attentionOps = new Map<number, AttentionOp>();

  constructor(private readonly ctx: GpuContext) {}

  get linear(): LinearOp {
    return (this.linearOp ??= new LinearOp(this.ctx));
  }

  get add(): AddOp {
    return (this.addOp ??= new AddOp(this.ctx));
  }

  get rmsNorm(): RmsNormOp {
    return (this.rmsNormOp ??= new RmsNormOp(this.ctx));
  }

  get layerNorm(): LayerNormOp {
    return (this.layerNormOp ??= new LayerNormOp(this.ctx));
  }

  get rope(): RopeOp {
    return (this.ropeOp ??= new RopeOp(this.ctx));
  }

  get ropeAppend(): RopeAppendOp {
    return (this.ropeAppendOp ??= new RopeAppendOp(this.ctx));
  }

  get moe(): MoeOp {
    return (this.moeOp ??= new MoeOp(this.ctx));
  }

  get geglu(): GatedOp {
    return (this.gegluOp ??= new GatedOp(this.ctx, 'geglu'));
  }

  get swiglu(): GatedOp {
    return (this.swigluOp ??= new GatedOp(this.ctx, 'swiglu'));
  }

  get gelu(): GeluOp {
    return (this.geluOp ??= new GeluOp(this.ctx));
  }

  get embedding(): EmbeddingOp {
    return (this.embeddingOp ??= new EmbeddingOp(this.ctx));
  }

  attention(headDim: number): AttentionOp {
    let op = this.attentionOps.get(headDim);
    if (!op) {
      op = new AttentionOp(this.ctx, { headDim });
      this.attentionOps.set(headDim, op);
    }
    return op;
  }

  destroy(): void {
    for (const op of this.attentionOps.values()) op.destroy();
    this.attentionOps.clear();
  }
}
