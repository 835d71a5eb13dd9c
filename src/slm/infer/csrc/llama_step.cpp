// One batch-1 decoding step of a Llama-family decoder (fp32, CPU), written out by hand: slm.infer.native.
//
// The whole step runs inside one OpenMP parallel region: each matrix-vector product is split by rows over the
// threads, norms are computed by every thread into its own buffer (no serial section), and rotary embedding,
// the cache write and attention are split by KV head. Before each barrier a thread asks for the start of its
// share of the next matrix, so the memory stays busy across it. A layer costs five barriers; the step is one call
// from Python. The arithmetic is the model's (slm.models.decoder, layers): RMSNorm in fp32, rotate-half rotary
// embedding on the first `rotary_dim` channels, grouped-query attention over the cache, SwiGLU.
#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kPrefetchBytes = 32 * 1024;  // measured: 16-64 KB all help

// sum_i w[i] * x[i]. Two accumulators keep two independent FMA chains in flight per row.
inline float dot(const float* w, const float* x, int64_t n) {
  int64_t i = 0;
  float s = 0.f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  float p[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) p[j] += w[i + j] * x[i + j];
  for (int j = 0; j < 8; ++j) s += p[j];
#endif
  for (; i < n; ++i) s += w[i] * x[i];
  return s;
}

// out = weight * x / sqrt(mean(x^2) + eps), as RMSNorm computes it.
inline void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = 1.f / std::sqrt(float(ss / n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * r);
}

// Rotate the first `rot` channels of one head in the rotate-half layout: x * cos + rotate_half(x) * sin.
inline void rope(float* x, const float* cos, const float* sin, int64_t rot) {
  const int64_t half = rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i + half] + a * sin[i + half];
  }
}

// This thread's share [begin, end) of n rows: contiguous, as even as possible.
inline std::pair<int64_t, int64_t> share(int64_t n, int tid, int threads) {
  const int64_t base = n / threads, extra = n % threads;
  const int64_t begin = tid * base + std::min<int64_t>(tid, extra);
  return {begin, begin + base + (tid < extra)};
}

// Ask for the first `bytes` of this thread's share of the next matrix while waiting at a barrier, so the
// memory system keeps streaming across the barrier instead of starting cold after it.
inline void prefetch(const float* w, int64_t rows, int64_t cols, int tid, int threads, int64_t bytes) {
  const auto [begin, end] = share(rows, tid, threads);
  const char* p = reinterpret_cast<const char*>(w + begin * cols);
  const int64_t n = std::min<int64_t>(bytes, (end - begin) * cols * int64_t(sizeof(float)));
  for (int64_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 3);
}

const float* f32(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              what, " must be a contiguous fp32 CPU tensor");
  return t.data_ptr<float>();
}

}  // namespace

class LlamaStep {
 public:
  LlamaStep(at::Tensor embed, std::vector<at::Tensor> attn_norm, std::vector<at::Tensor> qkv,
            std::vector<at::Tensor> o, std::vector<at::Tensor> mlp_norm, std::vector<at::Tensor> gate_up,
            std::vector<at::Tensor> down, at::Tensor norm, at::Tensor lm_head, at::Tensor cos, at::Tensor sin,
            int64_t n_heads, int64_t n_kv_heads, double eps)
      : embed_(embed), attn_norm_(attn_norm), qkv_(qkv), o_(o), mlp_norm_(mlp_norm), gate_up_(gate_up),
        down_(down), norm_(norm), lm_head_(lm_head), cos_(cos), sin_(sin), heads_(n_heads), kv_heads_(n_kv_heads),
        eps_(float(eps)) {
    for (const auto* group : {&attn_norm, &qkv, &o, &mlp_norm, &gate_up, &down})
      for (const auto& t : *group) f32(t, "every weight");
    for (const auto* t : {&embed, &norm, &lm_head, &cos, &sin}) f32(*t, "every weight and rotary table");
    layers_ = int64_t(qkv.size());
    for (const auto* group : {&attn_norm, &o, &mlp_norm, &gate_up, &down})
      TORCH_CHECK(int64_t(group->size()) == layers_, "every layer needs each of its six weights");
    dim_ = embed.size(1);
    vocab_ = lm_head.size(0);
    head_dim_ = qkv[0].size(0) / (heads_ + 2 * kv_heads_);
    ffn_ = down[0].size(1);
    rot_ = cos.size(1);
    max_len_ = cos.size(0);
    TORCH_CHECK(qkv[0].size(0) == (heads_ + 2 * kv_heads_) * head_dim_, "qkv rows do not match the head counts");
    TORCH_CHECK(heads_ % kv_heads_ == 0, "n_kv_heads must divide n_heads");
    for (int64_t l = 0; l < layers_; ++l) {
      TORCH_CHECK(qkv[l].size(1) == dim_ && o[l].size(0) == dim_ && o[l].size(1) == heads_ * head_dim_ &&
                      gate_up[l].size(0) == 2 * ffn_ && gate_up[l].size(1) == dim_ && down[l].size(0) == dim_,
                  "layer ", l, " has weights of unexpected shapes");
    }
    x_.resize(dim_);
    qkv_out_.resize(qkv[0].size(0));
    attn_.resize(heads_ * head_dim_);
    ff_.resize(ffn_);
    scores_.resize(heads_ * max_len_);
  }

  // Decode `token` (a one-element int64 tensor) at `position`: write its keys and values into the caches
  // [layers, 1, kv_heads, length, head_dim] at `position`, the logits into `logits` [vocab] and their argmax
  // into `argmax` [1].
  void step(at::Tensor token_tensor, int64_t position, at::Tensor k_cache, at::Tensor v_cache, at::Tensor logits,
            at::Tensor argmax) {
    TORCH_CHECK(token_tensor.numel() == 1 && token_tensor.scalar_type() == at::kLong, "one int64 token expected");
    TORCH_CHECK(argmax.numel() == 1 && argmax.scalar_type() == at::kLong, "argmax must be one int64 element");
    const int64_t token = token_tensor.data_ptr<int64_t>()[0];
    TORCH_CHECK(token >= 0 && token < embed_.size(0), "token id ", token, " is outside the vocabulary");
    TORCH_CHECK(k_cache.sizes() == v_cache.sizes() && k_cache.dim() == 5 && k_cache.size(0) == layers_ &&
                    k_cache.size(1) == 1 && k_cache.size(2) == kv_heads_ && k_cache.size(4) == head_dim_,
                "the cache does not match the model: [layers, 1, kv_heads, length, head_dim] expected");
    TORCH_CHECK(logits.numel() == vocab_, "logits must hold ", vocab_, " values");
    TORCH_CHECK(position >= 0 && position < max_len_ && position < k_cache.size(3),
                "position ", position, " is outside the cache");
    float* kc = const_cast<float*>(f32(k_cache, "the key cache"));
    float* vc = const_cast<float*>(f32(v_cache, "the value cache"));
    float* out = const_cast<float*>(f32(logits, "logits"));
    const int64_t cache_len = k_cache.size(3), D = head_dim_, rep = heads_ / kv_heads_;
    const float* cos = cos_.data_ptr<float>() + position * rot_;
    const float* sin = sin_.data_ptr<float>() + position * rot_;
    const float scale = 1.f / std::sqrt(float(D));
    std::memcpy(x_.data(), embed_.data_ptr<float>() + token * dim_, dim_ * sizeof(float));
    float* x = x_.data();
    float* qkv = qkv_out_.data();
    int64_t best = 0;
    const int threads = at::get_num_threads();
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      std::vector<float> h(std::max(dim_, ffn_));  // this thread's normalised input
      // A matrix-vector product over this thread's rows, then a prefetch of the next matrix, then the barrier.
      auto product = [&](const at::Tensor& weight, const float* in, auto&& store, const at::Tensor* next) {
        const float* w = weight.data_ptr<float>();
        const int64_t cols = weight.size(1);
        const auto [begin, end] = share(weight.size(0), tid, nt);
        for (int64_t r = begin; r < end; ++r) store(r, dot(w + r * cols, in, cols));
        if (next) prefetch(next->data_ptr<float>(), next->size(0), next->size(1), tid, nt, kPrefetchBytes);
#pragma omp barrier
      };
      for (int64_t l = 0; l < layers_; ++l) {
        rms_norm(x, attn_norm_[l].data_ptr<float>(), h.data(), dim_, eps_);
        product(qkv_[l], h.data(), [&](int64_t r, float y) { qkv[r] = y; }, &o_[l]);
        // Per KV head: rotate and store its key and value, then attend with each of its query heads.
#pragma omp for schedule(static)
        for (int64_t g = 0; g < kv_heads_; ++g) {
          float* k = qkv + (heads_ + g) * D;
          const float* v = qkv + (heads_ + kv_heads_ + g) * D;
          rope(k, cos, sin, rot_);
          float* kl = kc + ((l * kv_heads_ + g) * cache_len) * D;
          float* vl = vc + ((l * kv_heads_ + g) * cache_len) * D;
          std::memcpy(kl + position * D, k, D * sizeof(float));
          std::memcpy(vl + position * D, v, D * sizeof(float));
          for (int64_t j = 0; j < rep; ++j) {
            const int64_t head = g * rep + j;
            float* q = qkv + head * D;
            rope(q, cos, sin, rot_);
            float* s = scores_.data() + head * max_len_;
            float top = -std::numeric_limits<float>::infinity();
            for (int64_t p = 0; p <= position; ++p) {
              s[p] = dot(kl + p * D, q, D) * scale;
              top = std::max(top, s[p]);
            }
            float total = 0.f;
            for (int64_t p = 0; p <= position; ++p) total += (s[p] = std::exp(s[p] - top));
            float* y = attn_.data() + head * D;
            for (int64_t d = 0; d < D; ++d) y[d] = 0.f;
            for (int64_t p = 0; p <= position; ++p) {
              const float a = s[p] / total;
              const float* vp = vl + p * D;
              for (int64_t d = 0; d < D; ++d) y[d] += a * vp[d];
            }
          }
        }
        product(o_[l], attn_.data(), [&](int64_t r, float y) { x[r] += y; }, nullptr);
        rms_norm(x, mlp_norm_[l].data_ptr<float>(), h.data(), dim_, eps_);
        {  // gate and up rows r and ffn + r of one matrix, combined as silu(gate) * up
          const float* w = gate_up_[l].data_ptr<float>();
          const auto [begin, end] = share(ffn_, tid, nt);
          for (int64_t r = begin; r < end; ++r) {
            const float gate = dot(w + r * dim_, h.data(), dim_);
            const float up = dot(w + (ffn_ + r) * dim_, h.data(), dim_);
            ff_[r] = gate / (1.f + std::exp(-gate)) * up;
          }
          prefetch(down_[l].data_ptr<float>(), dim_, ffn_, tid, nt, kPrefetchBytes);
#pragma omp barrier
        }
        const at::Tensor* next = l + 1 < layers_ ? &qkv_[l + 1] : &lm_head_;
        product(down_[l], ff_.data(), [&](int64_t r, float y) { x[r] += y; }, next);
      }
      rms_norm(x, norm_.data_ptr<float>(), h.data(), dim_, eps_);
      product(lm_head_, h.data(), [&](int64_t r, float y) { out[r] = y; }, nullptr);
#pragma omp single
      for (int64_t r = 1; r < vocab_; ++r)
        if (out[r] > out[best]) best = r;
    }
    argmax.data_ptr<int64_t>()[0] = best;
  }

 private:
  at::Tensor embed_;
  std::vector<at::Tensor> attn_norm_, qkv_, o_, mlp_norm_, gate_up_, down_;
  at::Tensor norm_, lm_head_, cos_, sin_;
  int64_t heads_, kv_heads_;
  float eps_;
  int64_t layers_, dim_, vocab_, head_dim_, ffn_, rot_, max_len_;
  std::vector<float> x_, qkv_out_, attn_, ff_, scores_;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<LlamaStep>(m, "LlamaStep", pybind11::module_local())
      .def(pybind11::init<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                          std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor,
                          at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t, double>())
      // The step touches no Python object: other threads (a server's HTTP thread) run while it decodes.
      .def("step", &LlamaStep::step, pybind11::call_guard<pybind11::gil_scoped_release>());
}
