// The hidden stack of a narrow (width <= 16) ReLU network on the CPU: forward, saving what the backward pass
// needs, and backward, as XLA FFI handlers; the deadness report and death check; Adam's update; and whole
// training steps of an MLP (network_train: minibatch draw, layers, MSE gradient, backward, Adam). The Python
// side (collapse_mc/native/__init__.py) compiles this file once per machine with the host's vector
// instructions and falls back to XLA's code when it cannot.
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
#include <cmath>
#include <utility>
#include <vector>
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

// f(integral_constant W) for the runtime width
template <typename F>
ffi::Error dispatch_width(int64_t W, F&& f) {
  switch (W) {
#define CMC_CASE(w) \
  case w:           \
    f(std::integral_constant<int, w>{}); \
    break;
    CMC_CASE(1) CMC_CASE(2) CMC_CASE(3) CMC_CASE(4) CMC_CASE(5) CMC_CASE(6) CMC_CASE(7) CMC_CASE(8)
    CMC_CASE(9) CMC_CASE(10) CMC_CASE(11) CMC_CASE(12) CMC_CASE(13) CMC_CASE(14) CMC_CASE(15) CMC_CASE(16)
#undef CMC_CASE
    default:
      return ffi::Error::InvalidArgument("hidden_stack: width must be 1..16");
  }
  return ffi::Error::Success();
}

// f(integral_constant W, bool_constant LEAKY, bool_constant RES) for the runtime width and activation
template <typename F>
ffi::Error dispatch(int64_t W, bool leaky, bool residual, F&& f) {
  return dispatch_width(W, [&](auto w) {
    if (leaky) {
      if (residual) f(w, std::true_type{}, std::true_type{});
      else f(w, std::true_type{}, std::false_type{});
    } else {
      if (residual) f(w, std::false_type{}, std::true_type{});
      else f(w, std::false_type{}, std::false_type{});
    }
  });
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

#if !defined(CMC_PART) || CMC_PART == 3  // whole training steps
// Training steps of one network in one call: training/program.py's full steps for the mean squared error and
// plain Adam (forward.loss_and_grad_t's arithmetic, then native Adam). Per step s < V: the minibatch
// x[:, idx[s]], y[:, idx[s]] (P indices into the N training points), the input layer (Din -> W, augmented
// a_in (Din + 1, W)), the n active stacked layers (network_forward), the output layer (augmented a_out
// (W + 1, Dout)), the loss's gradient (1 / (Dout P)) * (2 (y - target)), the backward pass and Adam's update of
// every leaf with hp[s] (the stacked leaf's first n layers only: the rest have zero gradient). As in XLA's
// program, the input layer's activation derivative selects (jax.nn.relu, jax.nn.leaky_relu) and the stack's
// multiplies (network_backward); finite &= the loss is finite. Buffers: Work, sized once per call.
// The minibatch indices of training/program.py, jax.random's arithmetic exactly (threefry2x32 with
// jax_threefry_partitionable): step t's P indices are randint(fold_in(key, t), (P,), 0, N), that is, with
// k1, k2 = split(fold_in(key, t)) and hi[j], lo[j] = random_bits(k1 / k2)[j] = the two words of
// threefry(k, (0, j)) xor-ed, index j = ((hi % N) * m + lo % N) % N in uint32 arithmetic, m = (2^16 % N)^2 % N.
// Tested equal to jax.random.randint (tests/test_native_kernel.py).
inline uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

inline void threefry2x32(uint32_t k0, uint32_t k1, uint32_t& x0, uint32_t& x1) {
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  static constexpr int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  x0 += ks[0];
  x1 += ks[1];
  for (int i = 0; i < 5; ++i) {
    for (int r : kRot[i & 1]) {
      x0 += x1;
      x1 = rotl(x1, r);
      x1 ^= x0;
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + static_cast<uint32_t>(i + 1);
  }
}

typedef uint32_t vu __attribute__((vector_size(kLanes * sizeof(uint32_t))));

// threefry2x32 of kLanes counter pairs (0, x1) under one key: the two output words, lane by lane
inline void threefry2x32_lanes(uint32_t k0, uint32_t k1, vu x1, vu& y0, vu& y1) {
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  static constexpr int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  vu a = vu{} + ks[0], b = x1 + ks[1];
  for (int i = 0; i < 5; ++i) {
    for (int r : kRot[i & 1]) {
      a += b;
      b = (b << r) | (b >> (32 - r));
      b ^= a;
    }
    a += ks[(i + 1) % 3];
    b += ks[(i + 2) % 3] + static_cast<uint32_t>(i + 1);
  }
  y0 = a;
  y1 = b;
}

struct FastMod {  // a % d for uint32 a by multiplications (Lemire's fastmod; exact for every a and d >= 1)
  uint64_t M;
  uint32_t d;
  explicit FastMod(uint32_t d_) : M(~uint64_t{0} / d_ + 1), d(d_) {}
  uint32_t operator()(uint32_t a) const {
    return static_cast<uint32_t>((static_cast<unsigned __int128>(M * a) * d) >> 64);
  }
};

// idx[s * P + j] for steps t = t0 .. t0 + S - 1 of one network's batch-stream key (k0, k1), N training points
void minibatch_indices(uint32_t k0, uint32_t k1, int64_t t0, int64_t S, int64_t P, int64_t N, int32_t* idx) {
  const uint32_t span = N <= 0 ? 1u : static_cast<uint32_t>(N);
  const FastMod mod(span);
  uint32_t mult = mod(65536u % span);
  mult = mod(mult * mult);
  for (int64_t s = 0; s < S; ++s) {
    uint32_t f0 = 0, f1 = static_cast<uint32_t>(t0 + s);  // fold_in(key, t)
    threefry2x32(k0, k1, f0, f1);
    uint32_t a0 = 0, a1 = 0, b0 = 0, b1 = 1;  // split: counters (0, 0) and (0, 1)
    threefry2x32(f0, f1, a0, a1);
    threefry2x32(f0, f1, b0, b1);
    int32_t* out = idx + s * P;
    int64_t j = 0;
    vu lane;
    for (int q = 0; q < kLanes; ++q) lane[q] = q;
    for (; j + kLanes <= P; j += kLanes) {  // the random words kLanes at a time, the remainders one by one
      vu h0, h1, l0, l1;
      const vu ctr = lane + static_cast<uint32_t>(j);
      threefry2x32_lanes(a0, a1, ctr, h0, h1);
      threefry2x32_lanes(b0, b1, ctr, l0, l1);
      const vu hi = h0 ^ h1, lo = l0 ^ l1;
      for (int q = 0; q < kLanes; ++q) out[j + q] = static_cast<int32_t>(mod(mod(hi[q]) * mult + mod(lo[q])));
    }
    for (; j < P; ++j) {
      uint32_t h0 = 0, h1 = static_cast<uint32_t>(j), l0 = 0, l1 = static_cast<uint32_t>(j);
      threefry2x32(a0, a1, h0, h1);
      threefry2x32(b0, b1, l0, l1);
      const uint32_t hi = h0 ^ h1, lo = l0 ^ l1;
      out[j] = static_cast<int32_t>(mod(mod(hi) * mult + mod(lo)));
    }
  }
}

struct Work {
  std::vector<float> xb, yb, z1, h1, inputs, pre, out, y, gh, grad_h, scratch, g_in, g_st, g_out;
  std::vector<int32_t> idx;
  void size(int64_t W, int64_t L, int64_t P, int64_t Din, int64_t Dout, bool saves) {
    const int64_t WP = W * P;
    xb.resize(Din * P), yb.resize(Dout * P), z1.resize(WP), h1.resize(WP), inputs.resize(std::max<int64_t>(L, 1) * WP);
    pre.resize(saves ? L * WP : 0), out.resize(WP), y.resize(Dout * P), gh.resize(WP), grad_h.resize(WP);
    scratch.resize(2 * WP), g_in.resize((Din + 1) * W), g_st.resize(L * (W + 1) * W), g_out.resize((W + 1) * Dout);
    idx.resize(P);
  }
};

template <int W, bool LEAKY, bool RES>
void network_train(float* a_in, float* A, float* a_out, float* const mu[3], float* const nu[3], const float* xt,
                   const float* yt, int64_t N, int64_t Din, int64_t Dout, const uint32_t* key, int64_t t0,
                   int64_t P, bool full_batch, const float* hp, int64_t V, int n, float slope, int32_t* finite,
                   Work& w) {
  const int64_t WP = W * P;
  const float inv = 1.f / static_cast<float>(Dout * P);
  float* xb = w.xb.data();
  float* yb = w.yb.data();
  float* z1 = w.z1.data();
  float* h1 = w.h1.data();
  float* out = w.out.data();
  float* y = w.y.data();
  float* gh = w.gh.data();
  float* grad_h = w.grad_h.data();
  float* g_in = w.g_in.data();
  float* g_st = w.g_st.data();
  float* g_out = w.g_out.data();
  float* pre = kSavesPre<LEAKY, RES> ? w.pre.data() : nullptr;
  for (int64_t s = 0; s < V; ++s) {
    const int32_t* ix = w.idx.data();
    if (full_batch) {  // every training point, in order
      if (s == 0)
        for (int64_t p = 0; p < P; ++p) w.idx[p] = static_cast<int32_t>(p);
    } else {
      minibatch_indices(key[0], key[1], t0 + s, 1, P, N, w.idx.data());
    }
    for (int64_t p = 0; p < P; ++p) {
      const int64_t k = std::clamp<int64_t>(ix[p], 0, N - 1);
      for (int64_t i = 0; i < Din; ++i) xb[i * P + p] = xt[i * N + k];
      for (int64_t o = 0; o < Dout; ++o) yb[o * P + p] = yt[o * N + k];
    }
    // input layer: z = a_in[Din] + a_in[0] x_0 + a_in[1] x_1 + ... (forward.affine_t's order)
    for (int m = 0; m < W; ++m) {
      float* z = z1 + m * P;
      for (int64_t p = 0; p < P; ++p) z[p] = a_in[Din * W + m] + a_in[m] * xb[p];
      for (int64_t i = 1; i < Din; ++i)
        for (int64_t p = 0; p < P; ++p) z[p] += a_in[i * W + m] * xb[i * P + p];
      for (int64_t p = 0; p < P; ++p) h1[m * P + p] = act_f<LEAKY>(z[p], slope);
    }
    network_forward<W, LEAKY, RES>(h1, A, n, P, slope, out, w.inputs.data(), pre);
    // output layer and the loss's gradient dy (in y)
    float ssum = 0.f;
    for (int64_t o = 0; o < Dout; ++o) {
      float* yo = y + o * P;
      for (int64_t p = 0; p < P; ++p) yo[p] = a_out[W * Dout + o] + a_out[o] * out[p];
      for (int i = 1; i < W; ++i)
        for (int64_t p = 0; p < P; ++p) yo[p] += a_out[i * Dout + o] * out[i * P + p];
      for (int64_t p = 0; p < P; ++p) {
        const float d = yo[p] - yb[o * P + p];
        ssum += d * d;
        yo[p] = inv * (2.f * d);
      }
    }
    if (!std::isfinite(ssum)) *finite = 0;
    // output layer backward: its gradients and the cotangent gh of the stack's output
    for (int i = 0; i <= W; ++i)
      for (int64_t o = 0; o < Dout; ++o) {
        const float* hi = i < W ? out + i * P : nullptr;
        const float* dy = y + o * P;
        float t = 0.f;
        if (hi) for (int64_t p = 0; p < P; ++p) t += hi[p] * dy[p];
        else for (int64_t p = 0; p < P; ++p) t += dy[p];
        g_out[i * Dout + o] = t;
      }
    for (int i = 0; i < W; ++i) {
      float* g = gh + i * P;
      for (int64_t p = 0; p < P; ++p) g[p] = a_out[i * Dout] * y[p];
      for (int64_t o = 1; o < Dout; ++o)
        for (int64_t p = 0; p < P; ++p) g[p] += a_out[i * Dout + o] * y[o * P + p];
    }
    network_backward<W, LEAKY, RES>(gh, out, w.inputs.data(), pre, A, n, n, P, slope, grad_h, g_st,
                                    w.scratch.data());
    // input layer backward: the activation's derivative as a select, then the weight and bias sums
    for (int m = 0; m < W; ++m) {
      float* d = grad_h + m * P;
      const float* z = z1 + m * P;
      for (int64_t p = 0; p < P; ++p) {
        if constexpr (LEAKY) d[p] = z[p] >= 0.f ? d[p] : slope * d[p];
        else d[p] = z[p] > 0.f ? d[p] : 0.f;
      }
      for (int64_t i = 0; i <= Din; ++i) {
        float t = 0.f;
        if (i < Din) for (int64_t p = 0; p < P; ++p) t += xb[i * P + p] * d[p];
        else for (int64_t p = 0; p < P; ++p) t += d[p];
        g_in[i * W + m] = t;
      }
    }
    const float* h = hp + 7 * s;
    adam_rows(a_in, g_in, mu[0], nu[0], (Din + 1) * W, h);
    adam_rows(A, g_st, mu[1], nu[1], static_cast<int64_t>(n) * (W + 1) * W, h);
    adam_rows(a_out, g_out, mu[2], nu[2], (W + 1) * Dout, h);
  }
}

template <typename Buf>
inline int64_t per_net(const Buf& a, int64_t batch) {  // elements per network of a (B, ...) operand
  return batch ? static_cast<int64_t>(a.element_count()) / batch : 0;
}

// leaves (p_in, p_st, p_out, mu_in, mu_st, mu_out, nu_in, nu_st, nu_out): (B, ...) one network's leaf each;
// xt (B, Din, N), yt (B, Dout, N), key (B, 2) uint32 (the batch stream's key data), hp (B, S, 7) or (S, 7),
// n and valid (B) or scalar int32 (active stacked layers; steps to run, <= S), finite (B) int32, step0 scalar
// int32 (the first step's global index t); attributes batch_size P and full_batch (P = N, every point in
// order every step, no draws). Outputs: the nine leaves and finite,
// updated (aliasing their inputs).
ffi::Error train_impl(ffi::AnyBuffer p_in, ffi::AnyBuffer p_st, ffi::AnyBuffer p_out, ffi::AnyBuffer mu_in,
                      ffi::AnyBuffer mu_st, ffi::AnyBuffer mu_out, ffi::AnyBuffer nu_in, ffi::AnyBuffer nu_st,
                      ffi::AnyBuffer nu_out, ffi::AnyBuffer xt, ffi::AnyBuffer yt, ffi::Buffer<ffi::U32> key,
                      ffi::Buffer<ffi::F32> hp, ffi::Buffer<ffi::S32> n, ffi::Buffer<ffi::S32> valid,
                      ffi::Buffer<ffi::S32> finite, ffi::Buffer<ffi::S32> step0, float slope, int32_t leaky,
                      int32_t residual, int64_t P, int32_t full_batch, ffi::Result<ffi::AnyBuffer> o_in,
                      ffi::Result<ffi::AnyBuffer> o_st, ffi::Result<ffi::AnyBuffer> o_out,
                      ffi::Result<ffi::AnyBuffer> om_in, ffi::Result<ffi::AnyBuffer> om_st,
                      ffi::Result<ffi::AnyBuffer> om_out, ffi::Result<ffi::AnyBuffer> ov_in,
                      ffi::Result<ffi::AnyBuffer> ov_st, ffi::Result<ffi::AnyBuffer> ov_out,
                      ffi::Result<ffi::Buffer<ffi::S32>> o_finite) {
  const auto sd = p_st.dimensions(), xd = xt.dimensions(), yd = yt.dimensions(), hd = hp.dimensions();
  if (sd.size() < 3 || xd.size() < 2 || yd.size() < 2 || hd.size() < 2)
    return ffi::Error::InvalidArgument("train_steps: operand rank too low");
  const int64_t L = sd[sd.size() - 3], W = sd[sd.size() - 1], Din = xd[xd.size() - 2], N = xd[xd.size() - 1];
  const int64_t Dout = yd[yd.size() - 2], S = hd[hd.size() - 2];
  const int64_t batch = static_cast<int64_t>(finite.element_count());
  if (sd[sd.size() - 2] != W + 1 || per_net(p_in, batch) != (Din + 1) * W || per_net(p_out, batch) != (W + 1) * Dout ||
      per_net(yt, batch) != Dout * N || static_cast<int64_t>(key.element_count()) != 2 * batch ||
      per_net(p_st, batch) != L * (W + 1) * W || N < 1 || P < 1 || step0.element_count() < 1 ||
      (full_batch && P != N))
    return ffi::Error::InvalidArgument("train_steps: operand shapes do not match");
  const bool hp_per_net = static_cast<int64_t>(hp.element_count()) == 7 * S * batch && batch > 1;
  if (!hp_per_net && static_cast<int64_t>(hp.element_count()) != 7 * S)
    return ffi::Error::InvalidArgument("train_steps: hp must be (S, 7)");
  const ffi::AnyBuffer* ins[9] = {&p_in, &p_st, &p_out, &mu_in, &mu_st, &mu_out, &nu_in, &nu_st, &nu_out};
  ffi::Result<ffi::AnyBuffer>* outs[9] = {&o_in, &o_st, &o_out, &om_in, &om_st, &om_out, &ov_in, &ov_st, &ov_out};
  float* leaf[9];
  for (int k = 0; k < 9; ++k) {  // unless XLA handed the inputs' buffers as the outputs, start from copies
    leaf[k] = (*outs[k])->typed_data<float>();
    const float* src = ins[k]->typed_data<float>();
    if (leaf[k] != src) std::memcpy(leaf[k], src, sizeof(float) * ins[k]->element_count());
  }
  int32_t* fin = o_finite->typed_data();
  if (fin != finite.typed_data()) std::memcpy(fin, finite.typed_data(), sizeof(int32_t) * batch);
  const bool saves = leaky != 0 || residual != 0;
  thread_local Work work;
  work.size(W, L, P, Din, Dout, saves);
  const int64_t AW = (W + 1) * W;
  const int64_t t0 = step0.typed_data()[0];
  if (leaky || residual)  // (ReLU only: each variant would add a quarter to the build's longest part)
    return ffi::Error::InvalidArgument("train_steps: ReLU networks without residual blocks only");
  return dispatch_width(W, [&](auto w) {
    constexpr int Wc = decltype(w)::value;
    for (int64_t b = 0; b < batch; ++b) {
      float* mu[3] = {leaf[3] + b * (Din + 1) * W, leaf[4] + b * L * AW, leaf[5] + b * (W + 1) * Dout};
      float* nu[3] = {leaf[6] + b * (Din + 1) * W, leaf[7] + b * L * AW, leaf[8] + b * (W + 1) * Dout};
      const int64_t v = std::clamp<int64_t>(valid.element_count() == 1 ? valid.typed_data()[0]
                                                                         : valid.typed_data()[b], 0, S);
      network_train<Wc, false, false>(
          leaf[0] + b * (Din + 1) * W, leaf[1] + b * L * AW, leaf[2] + b * (W + 1) * Dout, mu, nu,
          xt.typed_data<float>() + b * Din * N, yt.typed_data<float>() + b * Dout * N, N, Din, Dout,
          key.typed_data() + 2 * b, t0, P, full_batch != 0, hp.typed_data() + (hp_per_net ? 7 * S * b : 0), v,
          active(n, b, L),
          slope, fin + b, work);
    }
  });
}

// key (B, 2) uint32, step0 scalar int32; attributes steps S, batch_size P, points N: idx (B, S, P) int32, the
// minibatch indices network_train draws (for the tests' comparison with jax.random.randint)
ffi::Error minibatch_impl(ffi::Buffer<ffi::U32> key, ffi::Buffer<ffi::S32> step0, int64_t S, int64_t P, int64_t N,
                          ffi::Result<ffi::Buffer<ffi::S32>> idx) {
  const int64_t batch = static_cast<int64_t>(key.element_count()) / 2;
  if (static_cast<int64_t>(idx->element_count()) != batch * S * P || step0.element_count() < 1)
    return ffi::Error::InvalidArgument("minibatch: shapes do not match");
  for (int64_t b = 0; b < batch; ++b)
    minibatch_indices(key.typed_data()[2 * b], key.typed_data()[2 * b + 1], step0.typed_data()[0], S, P, N,
                      idx->typed_data() + b * S * P);
  return ffi::Error::Success();
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
#if !defined(CMC_PART) || CMC_PART == 3  // whole training steps
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcTrainSteps, train_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<float>("slope")
                                  .Attr<int32_t>("leaky")
                                  .Attr<int32_t>("residual")
                                  .Attr<int64_t>("batch_size")
                                  .Attr<int32_t>("full_batch")
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(CollapseMcMinibatch, minibatch_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("steps")
                                  .Attr<int64_t>("batch_size")
                                  .Attr<int64_t>("points")
                                  .Ret<ffi::Buffer<ffi::S32>>());
#endif
#endif  // CMC_KERNELS_ONLY
