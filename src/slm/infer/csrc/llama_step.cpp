// One batch-1 decoding step of a Llama-family decoder (fp32 or int8 weights, CPU), written out by hand:
// slm.infer.native.
//
// The whole step runs inside one OpenMP parallel region. With at least as many KV heads as threads, the q/k/v
// product is split by KV head: each thread computes its heads' query, key and value rows, rotates them, writes the
// cache and attends, with no barrier in between (else the rows are shared first, then the heads). The other products
// are split by rows (each thread streams its own share, then helps with what is left of the others'), and norms are
// computed by every thread into its own buffer (no serial section). Before each barrier a thread asks for the start
// of its share of the next matrix, so the memory stays busy across it. A layer costs four barriers (five when the
// rows are shared); the step is one call from Python. The arithmetic is the model's (slm.models.decoder, layers):
// RMSNorm in fp32, rotate-half rotary embedding on the first `rotary_dim` channels, grouped-query attention over the
// cache, SwiGLU. Each linear is fp32 or int8 with a per-row scale (slm.infer.quant.QuantLinear), multiplied in fp32
// as the compiled int8 graph does: (x . int8 row) * scale.
#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kPrefetchBytes = 32 * 1024;  // 16-64 KB helped the first version; since, no clear effect

#if defined(__AVX512F__)
// 16 weights as fp32: fp32 ones as they are, int8 ones widened as they are read.
inline __m512 load16(const float* w) { return _mm512_loadu_ps(w); }
inline __m512 load16(const int8_t* w) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))));
}
#endif

// sum_i w[i] * x[i] over fp32 or int8 weights. Two accumulators keep two independent FMA chains in flight per row.
// With `ahead` > 0, fp32 weights are asked into the L2 cache that many bytes ahead of the loads (weights that
// stream from memory: slm.infer.native.AHEAD_BYTES).
template <typename W>
inline float dot(const W* w, const float* x, int64_t n, int64_t ahead = 0) {
  int64_t i = 0;
  float s = 0.f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    if constexpr (sizeof(W) == sizeof(float)) {
      if (ahead > 0) {
        const char* p = reinterpret_cast<const char*>(w + i) + ahead;
        _mm_prefetch(p, _MM_HINT_T1);
        _mm_prefetch(p + 64, _MM_HINT_T1);
      }
    }
    a0 = _mm512_fmadd_ps(load16(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(load16(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  float p[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) p[j] += float(w[i + j]) * x[i + j];
  for (int j = 0; j < 8; ++j) s += p[j];
#endif
  for (; i < n; ++i) s += float(w[i]) * x[i];
  return s;
}

// One linear layer's weight [rows, cols]: fp32, or int8 with a per-row scale. It keeps the tensors (the model's
// own, not copies) and their data pointers, which the product loops read once per row.
struct Matrix {
  at::Tensor weight, scale;  // scale: empty for fp32
  int64_t rows = 0, cols = 0;
  const float* f32 = nullptr;
  const int8_t* i8 = nullptr;
  const float* scales = nullptr;
  int64_t ahead = 0;  // look-ahead of fp32 rows (dot)

  Matrix(at::Tensor w, at::Tensor s) : weight(std::move(w)), scale(std::move(s)) {
    TORCH_CHECK(weight.dim() == 2 && weight.device().is_cpu() && weight.is_contiguous(),
                "every linear weight must be a contiguous 2-D CPU tensor");
    rows = weight.size(0);
    cols = weight.size(1);
    if (scale.numel() > 0) {
      TORCH_CHECK(weight.scalar_type() == at::kChar, "a linear with scales needs int8 weights");
      TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.device().is_cpu() && scale.is_contiguous() &&
                      scale.numel() == rows,
                  "int8 weights need one fp32 scale per row");
      i8 = weight.data_ptr<int8_t>();
      scales = scale.data_ptr<float>();
    } else {
      TORCH_CHECK(weight.scalar_type() == at::kFloat, "a linear without scales needs fp32 weights");
      f32 = weight.data_ptr<float>();
    }
  }
  int64_t row_bytes() const { return cols * (i8 ? 1 : int64_t(sizeof(float))); }
  const char* bytes() const { return i8 ? reinterpret_cast<const char*>(i8) : reinterpret_cast<const char*>(f32); }
  float row_dot(int64_t r, const float* x) const {
    return i8 ? dot(i8 + r * cols, x, cols) * scales[r] : dot(f32 + r * cols, x, cols, ahead);
  }
};

// out = weight * x / sqrt(mean(x^2) + eps), as RMSNorm computes it.
inline void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  float ss = 0.f;
  int64_t i = 0;
#if defined(__AVX512F__)
  __m512 squares = _mm512_setzero_ps();  // one serial chain of n adds would idle the memory after each barrier
  for (; i + 16 <= n; i += 16) squares = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i), squares);
  ss = _mm512_reduce_add_ps(squares);
#endif
  for (; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.f / std::sqrt(ss / float(n) + eps);
  for (i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * r);
}

#if defined(__AVX512F__)
// e^x for 16 values x <= 0 (Cephes' expf): e^x = 2^k e^r with k = round(x / ln 2), |r| <= ln 2 / 2, and e^r by
// a degree-6 polynomial; within 2 ulp of std::exp, and 0 below -88.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);  // ln 2 in two parts: r stays exact
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  for (const float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, k);
}
#endif

// One query head's attention over positions [0, n) of its KV head's cache rows (keys, values: [n, d]):
// y = softmax(keys q * scale) values, with `scores` (n floats) as scratch.
inline void attend(const float* q, const float* keys, const float* values, int64_t n, int64_t d, float scale,
                   float* scores, float* y) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < n; ++p) {
    scores[p] = dot(keys + p * d, q, d) * scale;
    top = std::max(top, scores[p]);
  }
  float total = 0.f;
  int64_t p = 0;
#if defined(__AVX512F__)
  __m512 sum = _mm512_setzero_ps();
  for (; p + 16 <= n; p += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + p), _mm512_set1_ps(top)));
    _mm512_storeu_ps(scores + p, e);
    sum = _mm512_add_ps(sum, e);
  }
  total = _mm512_reduce_add_ps(sum);
#endif
  for (; p < n; ++p) total += (scores[p] = std::exp(scores[p] - top));
  const float inv = 1.f / total;
  for (int64_t i = 0; i < d; ++i) y[i] = 0.f;
  for (p = 0; p < n; ++p) {
    const float a = scores[p] * inv;
    const float* v = values + p * d;
    for (int64_t i = 0; i < d; ++i) y[i] += a * v[i];
  }
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

// One product as the threads share it: its matrix, the rows shared out (for gate_up, hidden units: gate row r
// and up row ffn + r), and the rows per chunk, the unit in which threads claim them.
struct Part {
  const Matrix* m;
  int64_t rows, chunk;
  int64_t chunks() const { return (rows + chunk - 1) / chunk; }
};

// One thread's chunks of one product, [lo, hi) packed in one word. The owner claims from the front, half of what
// is left at a time: a few claims, one long forward stream. A thread that has finished its own takes one chunk
// at a time from the back, so whichever thread the memory system serves slower that moment gets help, and
// neither waits long at the barrier (without this, each waited 4-17% of the step).
struct alignas(64) Chunks {
  std::atomic<uint64_t> range{0};
  void set(uint64_t lo, uint64_t hi) { range.store(lo | (hi << 32), std::memory_order_relaxed); }
  bool claim(bool front, int64_t& first, int64_t& last) {
    uint64_t cur = range.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t lo = cur & 0xffffffffu, hi = cur >> 32;
      if (lo >= hi) return false;
      const uint64_t n = front ? std::max<uint64_t>(1, (hi - lo) / 2) : 1;
      const uint64_t next = front ? (lo + n) | (hi << 32) : lo | ((hi - 1) << 32);
      if (range.compare_exchange_weak(cur, next, std::memory_order_relaxed)) {
        first = int64_t(front ? lo : hi - 1);
        last = int64_t(front ? lo + n : hi);
        return true;
      }
    }
  }
};

const float* f32(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              what, " must be a contiguous fp32 CPU tensor");
  return t.data_ptr<float>();
}

}  // namespace

using Linear = std::tuple<at::Tensor, at::Tensor>;  // (weight, scale): an empty scale for fp32 weights

std::vector<Matrix> matrices(const std::vector<Linear>& linears) {
  std::vector<Matrix> out;
  for (const auto& [weight, scale] : linears) out.emplace_back(weight, scale);
  return out;
}

class LlamaStep {
 public:
  LlamaStep(at::Tensor embed, std::vector<at::Tensor> attn_norm, std::vector<Linear> qkv, std::vector<Linear> o,
            std::vector<at::Tensor> mlp_norm, std::vector<Linear> gate_up, std::vector<Linear> down, at::Tensor norm,
            Linear lm_head, at::Tensor cos, at::Tensor sin, int64_t n_heads, int64_t n_kv_heads, double eps,
            int64_t chunk_bytes, int64_t ahead_bytes)
      : embed_(embed), attn_norm_(attn_norm), qkv_(matrices(qkv)), o_(matrices(o)), mlp_norm_(mlp_norm),
        gate_up_(matrices(gate_up)), down_(matrices(down)), norm_(norm),
        lm_head_(std::get<0>(lm_head), std::get<1>(lm_head)), cos_(cos), sin_(sin), heads_(n_heads),
        kv_heads_(n_kv_heads), eps_(float(eps)), chunk_bytes_(chunk_bytes) {
    TORCH_CHECK(chunk_bytes > 0, "chunk_bytes must be positive");
    TORCH_CHECK(ahead_bytes >= 0, "ahead_bytes must not be negative");
    for (auto* group : {&qkv_, &o_, &gate_up_, &down_})
      for (auto& m : *group) m.ahead = ahead_bytes;
    lm_head_.ahead = ahead_bytes;
    for (const auto* group : {&attn_norm, &mlp_norm})
      for (const auto& t : *group) f32(t, "every norm weight");
    for (const auto* t : {&embed, &norm, &cos, &sin}) f32(*t, "the embedding, the final norm and the rotary tables");
    layers_ = int64_t(qkv_.size());
    TORCH_CHECK(layers_ > 0, "a model needs at least one layer");
    for (size_t n : {attn_norm_.size(), o_.size(), mlp_norm_.size(), gate_up_.size(), down_.size()})
      TORCH_CHECK(int64_t(n) == layers_, "every layer needs each of its six weights");
    dim_ = embed.size(1);
    vocab_ = lm_head_.rows;
    head_dim_ = qkv_[0].rows / (heads_ + 2 * kv_heads_);
    ffn_ = down_[0].cols;
    rot_ = cos.size(1);
    max_len_ = cos.size(0);
    TORCH_CHECK(qkv_[0].rows == (heads_ + 2 * kv_heads_) * head_dim_, "qkv rows do not match the head counts");
    TORCH_CHECK(heads_ % kv_heads_ == 0, "n_kv_heads must divide n_heads");
    TORCH_CHECK(lm_head_.cols == dim_, "the LM head does not match the model's width");
    for (int64_t l = 0; l < layers_; ++l) {
      TORCH_CHECK(qkv_[l].rows == qkv_[0].rows && qkv_[l].cols == dim_ && o_[l].rows == dim_ &&
                      o_[l].cols == heads_ * head_dim_ && gate_up_[l].rows == 2 * ffn_ && gate_up_[l].cols == dim_ &&
                      down_[l].rows == dim_ && down_[l].cols == ffn_,
                  "layer ", l, " has weights of unexpected shapes");
    }
    x_.resize(dim_);
    qkv_out_.resize(qkv_[0].rows);
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
    // Each thread takes whole KV heads for the q/k/v product and attention where there are enough heads to go
    // round: attention then waits for no other thread's rows, one barrier fewer per layer.
    qkv_by_head_ = threads <= kv_heads_;
    // Each row-split product's chunk queues, one per thread, filled with that thread's even share.
    const int64_t products = 4 * layers_ + 1;  // see part()
    if (queue_threads_ != threads) {
      queues_.reset(new Chunks[products * threads]);
      queue_threads_ = threads;
    }
    for (int64_t p = 0; p < products; ++p) {
      if (by_head(p)) continue;
      const int64_t chunks = part(p).chunks();
      for (int t = 0; t < threads; ++t) {
        const auto [lo, hi] = share(chunks, t, threads);
        queues_[p * threads + t].set(uint64_t(lo), uint64_t(hi));
      }
    }
    Chunks* queues = queues_.get();
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num(), team = omp_get_num_threads();
      // Product p's rows in chunks: this thread's own first, then what is left of the others', from their end.
      // Every queue set up is drained, even if OpenMP started fewer threads than asked for.
      auto work = [&](int64_t p, auto&& body) {
        const Part here = part(p);
        int64_t first, last;
        for (int k = 0; k < threads; ++k) {
          Chunks& q = queues[p * threads + (tid + k) % threads];
          while (q.claim(k == 0, first, last)) body(first * here.chunk, std::min(here.rows, last * here.chunk));
        }
      };
      std::vector<float> h(std::max(dim_, ffn_));  // this thread's normalised input
      // Product p over the rows this thread claims, then (if asked) a prefetch of product p + 1, then the barrier.
      auto product = [&](int64_t p, const float* in, auto&& store, bool prefetch_next) {
        const Matrix& m = *part(p).m;
        work(p, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) store(r, m.row_dot(r, in));
        });
        if (prefetch_next) prefetch(p + 1, tid, team);
#pragma omp barrier
      };
      for (int64_t l = 0; l < layers_; ++l) {
        rms_norm(x, attn_norm_[l].data_ptr<float>(), h.data(), dim_, eps_);
        // KV head g: rotate and store its key and value, then attend with each of its query heads.
        auto attend_with = [&](int64_t g) {
          float* k = qkv + (heads_ + g) * D;
          rope(k, cos, sin, rot_);
          float* kl = kc + ((l * kv_heads_ + g) * cache_len) * D;
          float* vl = vc + ((l * kv_heads_ + g) * cache_len) * D;
          std::memcpy(kl + position * D, k, D * sizeof(float));
          std::memcpy(vl + position * D, qkv + (heads_ + kv_heads_ + g) * D, D * sizeof(float));
          for (int64_t head = g * rep; head < (g + 1) * rep; ++head) {
            rope(qkv + head * D, cos, sin, rot_);
            attend(qkv + head * D, kl, vl, position + 1, D, scale, scores_.data() + head * max_len_,
                   attn_.data() + head * D);
          }
        };
        if (qkv_by_head_) {  // this thread's KV heads: their query, key and value rows, then their attention
          const Matrix& m = qkv_[l];
          const auto [g0, g1] = share(kv_heads_, tid, team);
          auto rows = [&](int64_t first, int64_t last) {
            for (int64_t r = first * D; r < last * D; ++r) qkv[r] = m.row_dot(r, h.data());
          };
          rows(g0 * rep, g1 * rep);                                  // queries
          rows(heads_ + g0, heads_ + g1);                            // keys
          rows(heads_ + kv_heads_ + g0, heads_ + kv_heads_ + g1);    // values
          for (int64_t g = g0; g < g1; ++g) attend_with(g);
        } else {  // more threads than KV heads: all of them share the rows, then the heads
          product(4 * l, h.data(), [&](int64_t r, float y) { qkv[r] = y; }, false);
#pragma omp for schedule(static) nowait
          for (int64_t g = 0; g < kv_heads_; ++g) attend_with(g);
        }
        prefetch(4 * l + 1, tid, team);
#pragma omp barrier
        product(4 * l + 1, attn_.data(), [&](int64_t r, float y) { x[r] += y; }, false);
        rms_norm(x, mlp_norm_[l].data_ptr<float>(), h.data(), dim_, eps_);
        {  // silu(gate) * up over each range of hidden units claimed: its gate rows first, then its up rows
           // (ffn_ + r). One stream at a time: reading each gate row next to its up row ran 3-7% slower on micro.
          const Matrix& m = gate_up_[l];
          work(4 * l + 2, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
              const float gate = m.row_dot(r, h.data());
              ff_[r] = gate / (1.f + std::exp(-gate));
            }
            for (int64_t r = begin; r < end; ++r) ff_[r] *= m.row_dot(ffn_ + r, h.data());
          });
          prefetch(4 * l + 3, tid, team);
#pragma omp barrier
        }
        product(4 * l + 3, ff_.data(), [&](int64_t r, float y) { x[r] += y; }, true);  // then qkv or the LM head
      }
      rms_norm(x, norm_.data_ptr<float>(), h.data(), dim_, eps_);
      product(4 * layers_, h.data(), [&](int64_t r, float y) { out[r] = y; }, false);
#pragma omp single
      for (int64_t r = 1; r < vocab_; ++r)
        if (out[r] > out[best]) best = r;
    }
    argmax.data_ptr<int64_t>()[0] = best;
  }

 private:
  // Whether product p is a q/k/v product that this step splits by KV head rather than into chunks of rows.
  bool by_head(int64_t p) const { return qkv_by_head_ && p < 4 * layers_ && p % 4 == 0; }

  // Ask for the first kPrefetchBytes of this thread's rows of product p while it waits at a barrier, so the
  // memory system keeps streaming across it: the start of its chunks, or of its KV heads' query rows.
  void prefetch(int64_t p, int tid, int team) const {
    const Part here = part(p);
    const int64_t row = by_head(p) ? share(kv_heads_, tid, team).first * (heads_ / kv_heads_) * head_dim_
                                   : std::min(here.rows, share(here.chunks(), tid, team).first * here.chunk);
    const int64_t begin = row * here.m->row_bytes();
    const int64_t end = std::min(here.m->rows * here.m->row_bytes(), begin + kPrefetchBytes);
    for (int64_t i = begin; i < end; i += 64) __builtin_prefetch(here.m->bytes() + i, 0, 3);
  }

  // Product p of a step, in order: per layer qkv, o, gate_up, down (4 * layer + 0..3), then the LM head.
  Part part(int64_t p) const {
    const Matrix* m = &lm_head_;
    int64_t rows = lm_head_.rows;
    if (p < 4 * layers_) {
      const int64_t l = p / 4;
      switch (p % 4) {
        case 0: m = &qkv_[l]; rows = m->rows; break;
        case 1: m = &o_[l]; rows = m->rows; break;
        case 2: m = &gate_up_[l]; rows = ffn_; break;
        default: m = &down_[l]; rows = m->rows; break;
      }
    }
    return {m, rows, std::max<int64_t>(1, chunk_bytes_ / m->row_bytes())};
  }

  at::Tensor embed_;
  std::vector<at::Tensor> attn_norm_;
  std::vector<Matrix> qkv_, o_;
  std::vector<at::Tensor> mlp_norm_;
  std::vector<Matrix> gate_up_, down_;
  at::Tensor norm_;
  Matrix lm_head_;
  at::Tensor cos_, sin_;
  int64_t heads_, kv_heads_;
  float eps_;
  int64_t chunk_bytes_;
  int64_t layers_, dim_, vocab_, head_dim_, ffn_, rot_, max_len_;
  std::vector<float> x_, qkv_out_, attn_, ff_, scores_;
  std::unique_ptr<Chunks[]> queues_;
  int queue_threads_ = 0;
  bool qkv_by_head_ = true;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<LlamaStep>(m, "LlamaStep", pybind11::module_local())
      .def(pybind11::init<at::Tensor, std::vector<at::Tensor>, std::vector<Linear>, std::vector<Linear>,
                          std::vector<at::Tensor>, std::vector<Linear>, std::vector<Linear>, at::Tensor, Linear,
                          at::Tensor, at::Tensor, int64_t, int64_t, double, int64_t, int64_t>())
      // The step touches no Python object: other threads (a server's HTTP thread) run while it decodes.
      .def("step", &LlamaStep::step, pybind11::call_guard<pybind11::gil_scoped_release>());
}
