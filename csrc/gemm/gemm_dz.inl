// The dz operands' packing state: a dense layer's dz = dy * f'(s), formed while an operand
// is packed (GemmDz in gemm_isa.h). Included inside namespace fastdl::<isa> by the GEMM
// drivers (gemm_kernel.inl, gemm_bf16_loops.inl) after V is defined.

// Where a dz operand (GemmDz) stands for the block being packed: s at the block's
// origin (same strides as the operand), alpha_vec and the B reductions at the block's
// first column. db/dalpha are null where this thread does not reduce.
struct DzBlock {
  const float* s;
  const float* alpha_vec;
  float alpha;
  float* db;
  float* dalpha;
  bool first;  // the first K block: db = sum, not db += sum
  // f of f'(s). The packing switches on it once per panel (pack_a, pack_b): only the code
  // that forms dz is compiled per activation, not the loop nest around it.
  Activation act;
};

template <class Act>
static FASTDL_INLINE V dz_of(V dy, const float* s, int n, V alpha) {
  if (!s) return dy;
  const V sv = n >= V::width ? V::load(s) : V::load_n(s, n);
  return dy * Act::df(sv, alpha);
}

