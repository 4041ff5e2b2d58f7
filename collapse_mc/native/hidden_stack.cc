// The hidden stack of a narrow (width <= 16) ReLU network on the CPU: forward, saving what the backward pass
// needs, and backward, as XLA FFI handlers. The Python side (collapse_mc/native/__init__.py) compiles this
// file once per machine with the host's vector instructions and falls back to XLA's code when it cannot.
//
// Why: XLA's CPU backend runs a 12 x 12 layer on 64 points at a small fraction of the machine's arithmetic
// rate (BENCHMARKS.md); here a layer is a register-blocked loop over the points (16 or 8 lanes) with the width
// a compile-time constant, and the weight gradient sums lanes with one transposing tree per 16 (or 8) entries.
//
// Layout, one network (leading axes of every operand are networks, B in all; features-major as in
// training/forward.py):
//   h0      (B, W, P)             input of the stack (the first hidden layer's output)
//   stacked (B, L, W + 1, W)      augmented weights of the L stacked layers: a[i][m] from unit i to unit m,
//                                 row W = bias
//   n       (B) or scalar, int32  active layers: layers n .. L - 1 are skipped (identity, zero gradient)
//   out     (B, W, P)             the stack's output
//   inputs  (B, L, W, P)          each active layer's input (entries >= n unwritten)
//   pre     (B, L, W, P)          each active layer's pre-activation, saved only for leaky ReLU and residual
//                                 layers ((B, 0) otherwise: a ReLU layer's derivative, z > 0, is read off its
//                                 output, relu(z) > 0, which halves the memory traffic)
// Layer: out = act(z), or h + act(z) when residual; z[m][p] = a[W][m] + sum_i a[i][m] h[i][p], summed in that
// order (as forward.affine_t). act: ReLU (NaN propagates, as jnp.maximum) or leaky ReLU (z >= 0 ? z : slope z);
// the backward pass multiplies the cotangent by act'(z) (1 where z > 0, resp. >= 0; else 0, resp. slope).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#ifndef CMC_KERNELS_ONLY
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(vf));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(vf)); }
template <size_t... Q>
inline vf splat_(float x, std::index_sequence<Q...>) {
  return vf{((void)Q, x)...};
}
// (not vf{} + x: adding +0 is not an identity for -0, so the compiler keeps the addition)
inline vf splat(float x) { return splat_(x, std::make_index_sequence<kLanes>{}); }

// Lane k of the result: the sum of the lanes of v[k], k < kLanes. A transposing tree: each stage adds the two
// halves of every lane group and packs two vectors into one (kLanes - 1 additions in all, not a horizontal
// sum per vector). Lane pairs are summed in the order (q, q + kLanes/2), then (q, q + kLanes/4), ...
template <int STRIDE>
inline vf fold(vf a, vf b) {  // lanes of groups of 2*STRIDE in a and b -> groups of STRIDE, a's then b's
  vi lo, hi;
  for (int q = 0; q < kLanes; ++q) {
    const int group = q / STRIDE, j = q % STRIDE;
    // output group g takes source group g of a (g < half) or of b, from the concatenation (a, b)
    const int half = kLanes / (2 * STRIDE);
    const int src = (group < half ? 0 : kLanes) + (group % half) * 2 * STRIDE + j;
    lo[q] = src;
    hi[q] = src + STRIDE;
  }
  return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi);
}

inline vf reduce_lanes(const vf* v) {
  vf x[kLanes];
  for (int k = 0; k < kLanes; ++k) x[k] = v[k];
  int count = kLanes;
#define CMC_STAGE(S)                                                       \
  if constexpr (kLanes >= 2 * S) {                                         \
    for (int j = 0; j < count / 2; ++j) x[j] = fold<S>(x[2 * j], x[2 * j + 1]); \
    count /= 2;                                                            \
  }
  CMC_STAGE(8) CMC_STAGE(4) CMC_STAGE(2) CMC_STAGE(1)
#undef CMC_STAGE
  return x[0];
}

template <bool LEAKY>
inline float act_f(float z, float slope) {
  if constexpr (LEAKY) return z >= 0.f ? z : slope * z;
  else return z < 0.f ? 0.f : z;
}
template <bool LEAKY>
inline vf act_f(vf z, float slope) {
  if constexpr (LEAKY) return z >= 0.f ? z : z * slope;
  else return z < 0.f ? vf{} : z;
}
// the cotangent g times act'(z), given s = z or, for ReLU, s = relu(z) (s > 0 exactly where z > 0); a product,
// as training/forward.py's backward pass, so a NaN cotangent stays NaN where act'(z) = 0
template <bool LEAKY>
inline float act_grad(float g, float s, float slope) {
  if constexpr (LEAKY) return g * (s >= 0.f ? 1.f : slope);
  else return g * (s > 0.f ? 1.f : 0.f);
}
template <bool LEAKY>
inline vf act_grad(vf g, vf s, float slope) {
  if constexpr (LEAKY) return g * (s >= 0.f ? splat(1.f) : splat(slope));
  else return g * (s > 0.f ? splat(1.f) : vf{});
}

template <bool LEAKY, bool RES>
constexpr bool kSavesPre = LEAKY || RES;

// One stacked layer forward on (W, P): next (the activation) and, when saved, z from h.
template <int W, bool LEAKY, bool RES, bool SAVE = kSavesPre<LEAKY, RES>>
void layer_forward(const float* __restrict h, const float* __restrict a, int64_t P, float slope,
                   float* __restrict z, float* __restrict next) {
  int64_t p0 = 0;
  for (; p0 + kLanes <= P; p0 += kLanes) {
    vf acc[W];
    for (int m = 0; m < W; ++m) acc[m] = splat(a[W * W + m]);
    for (int i = 0; i < W; ++i) {
      const vf hi = load(h + i * P + p0);
      for (int m = 0; m < W; ++m) acc[m] += splat(a[i * W + m]) * hi;
    }
    for (int m = 0; m < W; ++m) {
      if constexpr (SAVE) store(z + m * P + p0, acc[m]);
      vf o = act_f<LEAKY>(acc[m], slope);
      if constexpr (RES) o += load(h + m * P + p0);
      store(next + m * P + p0, o);
    }
  }
  for (; p0 < P; ++p0)
    for (int m = 0; m < W; ++m) {
      float acc = a[W * W + m];
      for (int i = 0; i < W; ++i) acc += a[i * W + m] * h[i * P + p0];
      if constexpr (SAVE) z[m * P + p0] = acc;
      next[m * P + p0] = act_f<LEAKY>(acc, slope) + (RES ? h[m * P + p0] : 0.f);
    }
}

// One stacked layer backward on (W, P): from the output cotangent g, the layer's input h and s (its saved
// pre-activation, or for ReLU its output), writes the input cotangent gnext and the augmented weight gradient
// ga ((W + 1) x W, flattened); delta (W, P) is scratch.
template <int W, bool LEAKY, bool RES>
void layer_backward(const float* __restrict g, const float* __restrict h, const float* __restrict s,
                    const float* __restrict a, int64_t P, float slope, float* __restrict gnext,
                    float* __restrict ga, float* __restrict delta) {
  int64_t p0 = 0;
  for (; p0 + kLanes <= P; p0 += kLanes) {
    // one delta vector live at a time (W accumulators + 2 registers: fits AVX2's 16 without spilling)
    vf acc[W];
    for (int i = 0; i < W; ++i) acc[i] = vf{};
    for (int m = 0; m < W; ++m) {
      const vf dv = act_grad<LEAKY>(load(g + m * P + p0), load(s + m * P + p0), slope);
      store(delta + m * P + p0, dv);
      for (int i = 0; i < W; ++i) acc[i] += splat(a[i * W + m]) * dv;
    }
    for (int i = 0; i < W; ++i) {
      if constexpr (RES) acc[i] += load(g + i * P + p0);
      store(gnext + i * P + p0, acc[i]);
    }
  }
  const int64_t pv = p0;  // points [0, pv) in whole lane blocks
  float gb_tail[W] = {};
  for (; p0 < P; ++p0) {
    float dv[W];
    for (int m = 0; m < W; ++m) {
      dv[m] = act_grad<LEAKY>(g[m * P + p0], s[m * P + p0], slope);
      delta[m * P + p0] = dv[m];
      gb_tail[m] += dv[m];
    }
    for (int i = 0; i < W; ++i) {
      float acc = 0.f;
      for (int m = 0; m < W; ++m) acc += a[i * W + m] * dv[m];
      gnext[i * P + p0] = acc + (RES ? g[i * P + p0] : 0.f);
    }
  }
  // the weight gradients ga[i * W + m] = sum_p h[i][p] delta[m][p] in tiles of TI x TM = kLanes entries (rows
  // past the width repeat the last one and are discarded): each tile summed lane-wise over the whole blocks,
  // across lanes by one tree, then over the tail points; the bias gradients ga[W * W + m] likewise from delta
  if (pv == 0) {  // fewer points than lanes (the one-point paths): plain sums, in the same order as below
    for (int i = 0; i < W; ++i)
      for (int m = 0; m < W; ++m) {
        float t = 0.f;
        for (int64_t q = 0; q < P; ++q) t += h[i * P + q] * delta[m * P + q];
        ga[i * W + m] = t;
      }
    for (int m = 0; m < W; ++m) ga[W * W + m] = 0.f + gb_tail[m];
    return;
  }
  constexpr int TM = 4, TI = kLanes / TM;
  float sums[kLanes];
  for (int i0 = 0; i0 < W; i0 += TI)
    for (int m0 = 0; m0 < W; m0 += TM) {
      vf acc[kLanes];
      for (int j = 0; j < kLanes; ++j) acc[j] = vf{};
      for (int64_t q = 0; q < pv; q += kLanes) {
        vf hv[TI], dv[TM];
        for (int ti = 0; ti < TI; ++ti) hv[ti] = load(h + std::min(i0 + ti, W - 1) * P + q);
        for (int tm = 0; tm < TM; ++tm) dv[tm] = load(delta + std::min(m0 + tm, W - 1) * P + q);
        for (int ti = 0; ti < TI; ++ti)
          for (int tm = 0; tm < TM; ++tm) acc[ti * TM + tm] += hv[ti] * dv[tm];
      }
      store(sums, reduce_lanes(acc));
      for (int ti = 0; ti < TI && i0 + ti < W; ++ti)
        for (int tm = 0; tm < TM && m0 + tm < W; ++tm) {
          const int i = i0 + ti, m = m0 + tm;
          float t = sums[ti * TM + tm];
          for (int64_t q = pv; q < P; ++q) t += h[i * P + q] * delta[m * P + q];
          ga[i * W + m] = t;
        }
    }
  for (int m0 = 0; m0 < W; m0 += kLanes) {  // the bias gradients: each delta row summed lane-wise, then a tree
    vf acc[kLanes];
    for (int j = 0; j < kLanes; ++j) {
      acc[j] = vf{};
      if (m0 + j < W)
        for (int64_t q = 0; q < pv; q += kLanes) acc[j] += load(delta + (m0 + j) * P + q);
    }
    store(sums, reduce_lanes(acc));
    for (int j = 0; j < kLanes && m0 + j < W; ++j) ga[W * W + m0 + j] = sums[j] + gb_tail[m0 + j];
  }
}

template <int W, bool LEAKY, bool RES>
void network_forward(const float* h0, const float* A, int n, int64_t P, float slope, float* out, float* inputs,
                     float* pre) {
  const int64_t WP = W * P;
  if (n <= 0) {
    std::memcpy(out, h0, sizeof(float) * WP);
    return;
  }
  std::memcpy(inputs, h0, sizeof(float) * WP);
  for (int l = 0; l < n; ++l) {
    float* next = (l + 1 < n) ? inputs + (l + 1) * WP : out;
    float* z = kSavesPre<LEAKY, RES> ? pre + l * WP : nullptr;
    layer_forward<W, LEAKY, RES>(inputs + l * WP, A + l * (W + 1) * W, P, slope, z, next);
  }
}

template <int W, bool LEAKY, bool RES>
void network_backward(const float* g_top, const float* out, const float* inputs, const float* pre,
                      const float* A, int n, int64_t L, int64_t P, float slope, float* grad_h, float* grad_A,
                      float* scratch) {
  const int64_t WP = W * P;
  const int64_t AW = (W + 1) * W;
  std::memset(grad_A + n * AW, 0, sizeof(float) * AW * (L - n));
  if (n <= 0) {
    std::memcpy(grad_h, g_top, sizeof(float) * WP);
    return;
  }
  // the input cotangents ping-pong between grad_h and scratch so that layer 0 writes grad_h; the second half
  // of scratch holds each layer's delta
  float* bufs[2] = {grad_h, scratch};
  float* delta = scratch + WP;
  const float* g = g_top;
  for (int l = n - 1; l >= 0; --l) {
    float* gnext = bufs[l & 1];
    const float* s = kSavesPre<LEAKY, RES> ? pre + l * WP : (l + 1 < n ? inputs + (l + 1) * WP : out);
    layer_backward<W, LEAKY, RES>(g, inputs + l * WP, s, A + l * AW, P, slope, gnext, grad_A + l * AW, delta);
    g = gnext;
  }
}


// Adam's update of one parameter leaf, optax.adam's arithmetic element by element (optax.scale_by_adam then
// scale_by_learning_rate then apply_updates), on a (R, C) leaf of one network: only rows < n (a stacked layer
// above the trial's depth has zero gradient and zero moments, which Adam leaves unchanged; the caller copies
// those rows when the outputs are not the inputs' buffers). hp = lr, b1, b2, eps, eps_root, and the bias
// corrections c1 = 1 - b1^t, c2 = 1 - b2^t of this update's count t.
inline vf vsqrt(vf x) {
#if defined(__AVX512F__)
  return (vf)_mm512_sqrt_ps((__m512)x);
#elif defined(__AVX__)
  return (vf)_mm256_sqrt_ps((__m256)x);
#else
  for (int q = 0; q < kLanes; ++q) x[q] = __builtin_sqrtf(x[q]);
  return x;
#endif
}

void adam_rows(float* __restrict p, const float* __restrict g, float* __restrict mu, float* __restrict nu,
               int64_t count, const float* hp) {
  const float lr = hp[0], b1 = hp[1], b2 = hp[2], eps = hp[3], eps_root = hp[4], c1 = hp[5], c2 = hp[6];
  const float a1 = 1.f - b1, a2 = 1.f - b2, step = -lr;
  int64_t k = 0;
  for (; k + kLanes <= count; k += kLanes) {
    const vf gv = load(g + k);
    const vf m = splat(a1) * gv + splat(b1) * load(mu + k);
    const vf v = splat(a2) * (gv * gv) + splat(b2) * load(nu + k);
    const vf u = (m / splat(c1)) / (vsqrt(v / splat(c2) + splat(eps_root)) + splat(eps));
    store(mu + k, m);
    store(nu + k, v);
    store(p + k, load(p + k) + u * splat(step));
  }
  for (; k < count; ++k) {
    const float gk = g[k];
    const float m = a1 * gk + b1 * mu[k];
    const float v = a2 * (gk * gk) + b2 * nu[k];
    mu[k] = m;
    nu[k] = v;
    p[k] = p[k] + ((m / c1) / (__builtin_sqrtf(v / c2 + eps_root) + eps)) * step;
  }
}

// The active layers over all P points, reporting per layer (observe.layer_report): dead[l], the number of
// neurons whose pre-activation is <= 0 at every point, and constant[l], whether every neuron's output is the
// same at every point (with one point: whether the output is zero); layers >= n report (0, 0). Nothing per
// layer is saved: buf (3 W P) holds the activations between layers (out the last) and a layer's
// pre-activations.
template <int W, bool LEAKY, bool RES>
void network_report(const float* h0, const float* A, int n, int64_t L, int64_t P, float slope, float* out,
                     int32_t* dead, int32_t* constant, float* buf) {
  const int64_t WP = W * P;
  for (int64_t l = 0; l < L; ++l) dead[l] = constant[l] = 0;
  if (n <= 0) {
    std::memcpy(out, h0, sizeof(float) * WP);
    return;
  }
  const float* h = h0;
  float* z = buf + 2 * WP;
  for (int l = 0; l < n; ++l) {
    float* next = (l + 1 < n) ? buf + (l & 1) * WP : out;
    // the layer (pre-activations to z, outputs to next), then per neuron the statistics in a second pass
    // over those rows (a few registers each, so the layer's loop keeps W accumulators without spilling)
    layer_forward<W, LEAKY, RES, true>(h, A + l * (W + 1) * W, P, slope, z, next);
    int count = 0;
    bool same = true;
    for (int m = 0; m < W; ++m) {
      const float* zm = z + m * P;
      const float* om = next + m * P;
      vi live = vi{}, nan = vi{};
      vf lo = splat(__builtin_inff()), hi = splat(-__builtin_inff());
      int64_t p0 = 0;
      for (; p0 + kLanes <= P; p0 += kLanes) {
        const vf zv = load(zm + p0), o = load(om + p0);
        live |= ~(zv <= 0.f);  // pre-activation > 0 (or NaN)
        nan |= (o != o);
        lo = o < lo ? o : lo;
        hi = o > hi ? o : hi;
      }
      bool any_live = false, any_nan = false;
      float mn = __builtin_inff(), mx = -__builtin_inff();
      for (int q = 0; q < kLanes; ++q) {
        any_live = any_live || live[q] != 0;
        any_nan = any_nan || nan[q] != 0;
        mn = std::min(mn, lo[q]);
        mx = std::max(mx, hi[q]);
      }
      for (; p0 < P; ++p0) {
        const float o = om[p0];
        any_live = any_live || !(zm[p0] <= 0.f);
        any_nan = any_nan || o != o;
        mn = std::min(mn, o);
        mx = std::max(mx, o);
      }
      count += any_live ? 0 : 1;
      same = same && (P == 1 ? om[0] == 0.f : (!any_nan && mn == mx));
    }
    dead[l] = count;
    constant[l] = same ? 1 : 0;
    h = next;
  }
}

// Whether some stacked layer is dead on all P points (every neuron's pre-activation <= 0 at every point and the
// layer's output the same at every point: network_report's dead == W and constant). A layer dead on all points
// is dead on any subset, so when no layer is dead on the first K points, none is on all P: the whole report
// runs only for networks with a layer dead on that prefix (a training set is drawn at random, so its first K
// points are a random subset). buf holds 5 W P floats; flags holds 2 L.
template <int W, bool LEAKY, bool RES>
bool network_any_dead(const float* h0, const float* A, int n, int64_t L, int64_t P, int64_t K, float slope,
                      float* buf, int32_t* flags) {
  int32_t* dead = flags;
  int32_t* constant = flags + L;
  auto any = [&]() {
    for (int64_t l = 0; l < L; ++l)
      if (dead[l] == W && constant[l]) return true;
    return false;
  };
  const int64_t WP = W * P;
  if (K >= 2 && K < P) {
    float* sub = buf;
    for (int m = 0; m < W; ++m) std::memcpy(sub + m * K, h0 + m * P, sizeof(float) * K);
    network_report<W, LEAKY, RES>(sub, A, n, L, K, slope, buf + WP, dead, constant, buf + 2 * WP);
    if (!any()) return false;
  }
  network_report<W, LEAKY, RES>(h0, A, n, L, P, slope, buf + WP, dead, constant, buf + 2 * WP);
  return any();
}

}  // namespace

#ifndef CMC_KERNELS_ONLY
namespace {

struct Shape {
  int64_t batch, L, W, P;
};

ffi::Error shape_of(ffi::AnyBuffer::Dimensions hd, ffi::AnyBuffer::Dimensions ad, Shape* s) {
  if (hd.size() < 2 || ad.size() < 3) return ffi::Error::InvalidArgument("hidden_stack: operand rank too low");
  s->W = hd[hd.size() - 2];
  s->P = hd[hd.size() - 1];
  s->L = ad[ad.size() - 3];
  if (ad[ad.size() - 2] != s->W + 1 || ad[ad.size() - 1] != s->W)
    return ffi::Error::InvalidArgument("hidden_stack: weights do not match the width");
  int64_t b = 1;
  for (size_t k = 0; k + 2 < hd.size(); ++k) b *= hd[k];
  s->batch = b;
  return ffi::Error::Success();
}

// f(integral_constant W, bool_constant LEAKY, bool_constant RES) for the runtime width and activation
template <typename F>
ffi::Error dispatch(int64_t W, bool leaky, bool residual, F&& f) {
  auto by_act = [&](auto w) {
    if (leaky) {
      if (residual) f(w, std::true_type{}, std::true_type{});
      else f(w, std::true_type{}, std::false_type{});
    } else {
      if (residual) f(w, std::false_type{}, std::true_type{});
      else f(w, std::false_type{}, std::false_type{});
    }
  };
  switch (W) {
#define CMC_CASE(w) \
  case w:           \
    by_act(std::integral_constant<int, w>{}); \
    break;
    CMC_CASE(1) CMC_CASE(2) CMC_CASE(3) CMC_CASE(4) CMC_CASE(5) CMC_CASE(6) CMC_CASE(7) CMC_CASE(8)
    CMC_CASE(9) CMC_CASE(10) CMC_CASE(11) CMC_CASE(12) CMC_CASE(13) CMC_CASE(14) CMC_CASE(15) CMC_CASE(16)
#undef CMC_CASE
    default:
      return ffi::Error::InvalidArgument("hidden_stack: width must be 1..16");
  }
  return ffi::Error::Success();
}

inline int active(const ffi::Buffer<ffi::S32>& n, int64_t b, int64_t L) {
  const int32_t* d = n.typed_data();
  const int32_t v = n.element_count() == 1 ? d[0] : d[b];
  return static_cast<int>(std::clamp<int64_t>(v, 0, L));
}

#if !defined(CMC_PART) || CMC_PART == 1  // forward and report (the build compiles the two parts in parallel)
ffi::Error forward_impl(ffi::AnyBuffer h0, ffi::AnyBuffer stacked, ffi::Buffer<ffi::S32> n, float slope,
                        int32_t leaky, int32_t residual, ffi::Result<ffi::AnyBuffer> out,
                        ffi::Result<ffi::AnyBuffer> inputs, ffi::Result<ffi::AnyBuffer> pre) {
  Shape s;
  if (auto e = shape_of(h0.dimensions(), stacked.dimensions(), &s); e.failure()) return e;
  const float* h = h0.typed_data<float>();
  const float* A = stacked.typed_data<float>();
  float* o = out->typed_data<float>();
  float* in = inputs->typed_data<float>();
  float* z = pre->typed_data<float>();
  const int64_t WP = s.W * s.P, AW = (s.W + 1) * s.W;
  const bool saves = pre->element_count() > 0;
  if (saves != (leaky != 0 || residual != 0))
    return ffi::Error::InvalidArgument("hidden_stack: pre-activations are saved exactly for leaky or residual");
  return dispatch(s.W, leaky != 0, residual != 0, [&](auto w, auto lk, auto res) {
    constexpr int Wc = decltype(w)::value;
    for (int64_t b = 0; b < s.batch; ++b)
      network_forward<Wc, decltype(lk)::value, decltype(res)::value>(
          h + b * WP, A + b * s.L * AW, active(n, b, s.L), s.P, slope, o + b * WP, in + b * s.L * WP,
          saves ? z + b * s.L * WP : nullptr);
  });
}

ffi::Error report_impl(ffi::AnyBuffer h0, ffi::AnyBuffer stacked, ffi::Buffer<ffi::S32> n, float slope,
                       int32_t leaky, int32_t residual, ffi::Result<ffi::AnyBuffer> out,
                       ffi::Result<ffi::Buffer<ffi::S32>> dead, ffi::Result<ffi::Buffer<ffi::S32>> constant,
                       ffi::Result<ffi::AnyBuffer> scratch) {
  Shape s;
  if (auto e = shape_of(h0.dimensions(), stacked.dimensions(), &s); e.failure()) return e;
  const float* h = h0.typed_data<float>();
  const float* A = stacked.typed_data<float>();
  float* o = out->typed_data<float>();
  int32_t* d = dead->typed_data();
  int32_t* c = constant->typed_data();
  float* sc = scratch->typed_data<float>();
  const int64_t WP = s.W * s.P, AW = (s.W + 1) * s.W;
  return dispatch(s.W, leaky != 0, residual != 0, [&](auto w, auto lk, auto res) {
    constexpr int Wc = decltype(w)::value;
    for (int64_t b = 0; b < s.batch; ++b)
      network_report<Wc, decltype(lk)::value, decltype(res)::value>(
          h + b * WP, A + b * s.L * AW, active(n, b, s.L), s.L, s.P, slope, o + b * WP, d + b * s.L,
          c + b * s.L, sc + 3 * b * WP);
  });
}


// p, g, mu, nu: (B, R, ...); n: active rows per network; hp: (B, 7) or (7); outputs p', mu', nu' (may alias
// p, mu, nu: XLA donates them)
ffi::Error adam_impl(ffi::AnyBuffer p, ffi::AnyBuffer g, ffi::AnyBuffer mu, ffi::AnyBuffer nu,
                     ffi::Buffer<ffi::S32> n, ffi::Buffer<ffi::F32> hp, int32_t rank,
                     ffi::Result<ffi::AnyBuffer> p_out, ffi::Result<ffi::AnyBuffer> mu_out,
                     ffi::Result<ffi::AnyBuffer> nu_out) {
  // the last `rank` axes are one network's leaf: rows along the first of them, C entries per row
  const auto d = p.dimensions();
  if (rank < 1 || static_cast<size_t>(rank) > d.size()) return ffi::Error::InvalidArgument("adam: bad rank");
  const int64_t R = d[d.size() - rank];
  int64_t C = 1;
  for (size_t k = d.size() - rank + 1; k < d.size(); ++k) C *= d[k];
  const int64_t RC = R * C;
  const int64_t batch = R * C == 0 ? 0 : static_cast<int64_t>(p.element_count()) / RC;
  const float* hps = hp.typed_data();
  const bool per_net = static_cast<int64_t>(hp.element_count()) == 7 * batch && batch > 1;
  if (!per_net && hp.element_count() != 7) return ffi::Error::InvalidArgument("adam: 7 hyperparameters");
  float* po = p_out->typed_data<float>();
  float* mo = mu_out->typed_data<float>();
  float* vo = nu_out->typed_data<float>();
  const float* pi = p.typed_data<float>();
  const float* mi = mu.typed_data<float>();
  const float* vi_ = nu.typed_data<float>();
  const float* gi = g.typed_data<float>();
  const size_t bytes = sizeof(float) * p.element_count();
  // unless XLA handed the inputs' buffers as the outputs, start from copies (rows >= n stay as they are)
  if (po != pi) std::memcpy(po, pi, bytes);
  if (mo != mi) std::memcpy(mo, mi, bytes);
  if (vo != vi_) std::memcpy(vo, vi_, bytes);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t rows = active(n, b, R);
    adam_rows(po + b * RC, gi + b * RC, mo + b * RC, vo + b * RC, rows * C, hps + (per_net ? 7 * b : 0));
  }
  return ffi::Error::Success();
}

// h0 (B, W, P), stacked (B, L, W + 1, W), n; attr prefix K: dead (B,) int32 (1 = some stacked layer dead on all
// P points); scratch (B, 5 W P + 2 L) floats (flags reuse its tail as int32)
ffi::Error any_dead_impl(ffi::AnyBuffer h0, ffi::AnyBuffer stacked, ffi::Buffer<ffi::S32> n, float slope,
                         int32_t leaky, int32_t residual, int64_t prefix, ffi::Result<ffi::Buffer<ffi::S32>> dead,
                         ffi::Result<ffi::AnyBuffer> scratch) {
  Shape s;
  if (auto e = shape_of(h0.dimensions(), stacked.dimensions(), &s); e.failure()) return e;
  const float* h = h0.typed_data<float>();
  const float* A = stacked.typed_data<float>();
  int32_t* d = dead->typed_data();
  float* sc = scratch->typed_data<float>();
  const int64_t WP = s.W * s.P, AW = (s.W + 1) * s.W, per = 5 * WP + 2 * s.L;
  return dispatch(s.W, leaky != 0, residual != 0, [&](auto w, auto lk, auto res) {
    constexpr int Wc = decltype(w)::value;
    for (int64_t b = 0; b < s.batch; ++b) {
      float* buf = sc + b * per;
      d[b] = network_any_dead<Wc, decltype(lk)::value, decltype(res)::value>(
                 h + b * WP, A + b * s.L * AW, active(n, b, s.L), s.L, s.P, prefix, slope, buf,
                 reinterpret_cast<int32_t*>(buf + 5 * WP)) ? 1 : 0;
    }
  });
}
#endif
#if !defined(CMC_PART) || CMC_PART == 2  // backward
ffi::Error backward_impl(ffi::AnyBuffer g, ffi::AnyBuffer out, ffi::AnyBuffer inputs, ffi::AnyBuffer pre,
                         ffi::AnyBuffer stacked, ffi::Buffer<ffi::S32> n, float slope, int32_t leaky,
                         int32_t residual, ffi::Result<ffi::AnyBuffer> grad_h,
                         ffi::Result<ffi::AnyBuffer> grad_stacked, ffi::Result<ffi::AnyBuffer> scratch) {
  Shape s;
  if (auto e = shape_of(g.dimensions(), stacked.dimensions(), &s); e.failure()) return e;
  const float* gt = g.typed_data<float>();
  const float* o = out.typed_data<float>();
  const float* in = inputs.typed_data<float>();
  const float* z = pre.typed_data<float>();
  const float* A = stacked.typed_data<float>();
  float* gh = grad_h->typed_data<float>();
  float* gA = grad_stacked->typed_data<float>();
  float* sc = scratch->typed_data<float>();
  const int64_t WP = s.W * s.P, AW = (s.W + 1) * s.W;
  const bool saves = pre.element_count() > 0;
  if (saves != (leaky != 0 || residual != 0))
    return ffi::Error::InvalidArgument("hidden_stack: pre-activations are saved exactly for leaky or residual");
  return dispatch(s.W, leaky != 0, residual != 0, [&](auto w, auto lk, auto res) {
    constexpr int Wc = decltype(w)::value;
    for (int64_t b = 0; b < s.batch; ++b)
      network_backward<Wc, decltype(lk)::value, decltype(res)::value>(
          gt + b * WP, o + b * WP, in + b * s.L * WP, saves ? z + b * s.L * WP : nullptr, A + b * s.L * AW,
          active(n, b, s.L), s.L, s.P, slope, gh + b * WP, gA + b * s.L * AW, sc + 2 * b * WP);
  });
}


#endif
}  // namespace

// the arguments of the forward pass, the report and the death check: h0, stacked, n and the activation
#define CMC_STACK_BIND()                                                                            \
  ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::Buffer<ffi::S32>>().Attr<float>( \
      "slope").Attr<int32_t>("leaky").Attr<int32_t>("residual")
#if !defined(CMC_PART) || CMC_PART == 1  // forward and report (the build compiles the two parts in parallel)
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcHiddenStackForward, forward_impl,
                              CMC_STACK_BIND()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcHiddenStackReport, report_impl,
                              CMC_STACK_BIND()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcHiddenStackAnyDead, any_dead_impl,
                              CMC_STACK_BIND()
                                  .Attr<int64_t>("prefix")
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcAdamUpdate, adam_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("rank")
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
#endif
#if !defined(CMC_PART) || CMC_PART == 2  // backward
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcHiddenStackBackward, backward_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<float>("slope")
                                  .Attr<int32_t>("leaky")
                                  .Attr<int32_t>("residual")
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
#endif
#endif  // CMC_KERNELS_ONLY
