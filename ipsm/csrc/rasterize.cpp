// Tile-based rasterization of 2D Gaussians on the CPU (forward and hand-written backward).
//
// The maths follows 3DGS / gsplat's RasterizeToPixels3DGS{Fwd,Bwd}.cu: pixel centres at (x+0.5, y+0.5),
// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with conic (a, b, c) and delta = mean2d - pixel,
// alpha = min(0.999, opacity * exp(-sigma)), skip when sigma < 0 or alpha < 1/255, stop a pixel
// (excluding the current Gaussian) once the next transmittance would fall to <= 1e-4.
//
// CPU layout differs from CUDA: each tile is one task for an OpenMP thread (biggest tiles first, dynamic
// schedule), processed Gaussian-major: for each Gaussian of the tile's depth-sorted list we visit the rows
// of its pixel box, 8 pixels of a row at a time (SIMD lanes, rasterize_kernels.h), keeping the per-pixel
// state (T, accumulated channels, last index) of the tile in small structure-of-arrays buffers.
// The backward pass walks the same lists back to front, recovers T by dividing by (1 - alpha) from the
// stored final transmittance, and writes one gradient record per (tile, Gaussian) intersection, so no two
// threads ever write the same memory; a final serial pass sums the records per Gaussian (deterministic, no atomics).
//
// The kernels are compiled twice, for the baseline instruction set and for AVX2; `simd_isa()` tells which one
// runs (AVX2 when the CPU has it, override with set_simd_isa("generic") or IPSM_SIMD=generic).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)  // GCC: `#pragma GCC target` compiles the AVX2 copy
#include <immintrin.h>
#define IPSM_X86 1
#elif defined(__SSE2__)
#include <immintrin.h>  // other compilers on x86-64: the generic build only
#endif

namespace {

constexpr float ALPHA_THRESHOLD = 1.f / 255.f;
constexpr float ALPHA_MAX = 0.999f;
constexpr float T_EPS = 1e-4f;

// Everything a tile kernel needs about one (camera, Gaussian), gathered once so that a list entry is one cache line.
template <int D> struct GPack {
    float mx, my, ca, cb, cc, ha, op, smax;  // mean2d, conic, 0.5 a, opacity, sigma beyond which alpha < 1/255
    int bb[4];                               // pixel box [x0, x1) x [y0, y1) (padded by one pixel), empty if culled
    float col[D];
};

template <int D> struct FwdArgs {
    const GPack<D>* gp; const int* off; const int* fid; int64_t T; int TW, ts, W, H;
    float* out; float* out_alpha; int* last; float* t_final;
};
template <int D> struct BwdArgs {
    const GPack<D>* gp; const int* off; const int* fid; int64_t T; int TW, ts, W, H;
    const float* t_final; const int* last; const float* v_out; const float* v_alpha; float* rec;
};

// Per-thread scratch: a few float / int buffers reused from tile to tile.
struct Scratch {
    std::vector<float> fs[3]; std::vector<int> is[2];
    float* f(int k, size_t n) { if (fs[k].size() < n) fs[k].resize(n); return fs[k].data(); }
    int* i(int k, size_t n) { if (is[k].size() < n) is[k].resize(n); return is[k].data(); }
};

}  // namespace

namespace generic {
#include "rasterize_kernels.h"
}
#ifdef IPSM_X86
#pragma GCC push_options
#pragma GCC target("avx2")
#define IPSM_AVX2 1
namespace avx2 {
#include "rasterize_kernels.h"
}
#undef IPSM_AVX2
#pragma GCC pop_options
#endif

namespace {

int default_isa() {
    const char* e = std::getenv("IPSM_SIMD");
    if (e && std::string(e) == "generic") return 0;
#ifdef IPSM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}
int g_isa = default_isa();  // 0 = generic, 1 = avx2

// Pixel bounding box of a Gaussian (centre m, radii r), padded by one pixel against rounding.
inline void gauss_bbox(float mx, float my, int rx, int ry, int W, int H, int* b) {
    b[0] = std::max(0, (int)std::floor(mx - rx - 0.5f) - 1);
    b[1] = std::min(W, (int)std::ceil(mx + rx - 0.5f) + 2);
    b[2] = std::max(0, (int)std::floor(my - ry - 0.5f) - 1);
    b[3] = std::min(H, (int)std::ceil(my + ry - 0.5f) + 2);
}

template <int D>
std::vector<GPack<D>> pack(const torch::Tensor& means2d, const torch::Tensor& conics, const torch::Tensor& colors,
                           const torch::Tensor& opacities, const torch::Tensor& radii, int W, int H) {
    const int64_t n = means2d.size(0) * means2d.size(1);
    const float* m = means2d.data_ptr<float>(); const float* cn = conics.data_ptr<float>();
    const float* col = colors.data_ptr<float>(); const float* op = opacities.data_ptr<float>();
    const int* r = radii.data_ptr<int>();
    std::vector<GPack<D>> gp(n);
    at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            GPack<D>& g = gp[i];
            g.mx = m[2 * i]; g.my = m[2 * i + 1];
            g.ca = cn[3 * i]; g.cb = cn[3 * i + 1]; g.cc = cn[3 * i + 2]; g.ha = 0.5f * g.ca;
            g.op = op[i]; g.smax = std::log(g.op / ALPHA_THRESHOLD) + 1e-3f;
            for (int j = 0; j < D; ++j) g.col[j] = col[i * D + j];
            if (r[2 * i] > 0 && r[2 * i + 1] > 0) gauss_bbox(g.mx, g.my, r[2 * i], r[2 * i + 1], W, H, g.bb);
            else g.bb[0] = g.bb[1] = g.bb[2] = g.bb[3] = 0;
            // tighten to the ellipse sigma = smax (half-widths sqrt(2 smax Sigma_xx), sqrt(2 smax Sigma_yy)), +1 px margin
            const float det = g.ca * g.cc - g.cb * g.cb;
            if (det > 0.f && g.smax > 0.f) {
                const float ex = std::sqrt(2.f * g.smax * g.cc / det), ey = std::sqrt(2.f * g.smax * g.ca / det);
                g.bb[0] = std::max(g.bb[0], (int)std::floor(g.mx - ex - 0.5f) - 1);
                g.bb[1] = std::min(g.bb[1], (int)std::ceil(g.mx + ex - 0.5f) + 2);
                g.bb[2] = std::max(g.bb[2], (int)std::floor(g.my - ey - 0.5f) - 1);
                g.bb[3] = std::min(g.bb[3], (int)std::ceil(g.my + ey - 0.5f) + 2);
            }
        }
    });
    return gp;
}

// Tiles in decreasing list length: the dynamic schedule then starts the expensive tiles first (less idle tail).
std::vector<int64_t> tile_order(const int* off, int64_t n) {
    std::vector<int64_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [off](int64_t a, int64_t b) { return off[a + 1] - off[a] > off[b + 1] - off[b]; });
    return o;
}

template <typename F> void parallel_tiles(const std::vector<int64_t>& order, F f) {
    const int64_t n = order.size();
#pragma omp parallel num_threads(at::get_num_threads())
    {
        Scratch s;
#pragma omp for schedule(dynamic, 1)
        for (int64_t q = 0; q < n; ++q) f(order[q], s);
    }
}

// Stable LSD radix sort of ids by float key (3 passes of 11 bits): ties keep their input (id) order.
void radix_sort_by_key(std::vector<int>& ids, const float* key) {
    const size_t n = ids.size();
    std::vector<uint32_t> k(n), k2(n); std::vector<int> ids2(n);
    for (size_t i = 0; i < n; ++i) {
        uint32_t u; std::memcpy(&u, key + ids[i], 4);
        k[i] = u ^ ((u >> 31) ? 0xFFFFFFFFu : 0x80000000u);  // order-preserving map of IEEE floats to unsigned ints
    }
    for (int shift = 0; shift < 33; shift += 11) {
        size_t cnt[2049] = {0};
        for (size_t i = 0; i < n; ++i) cnt[((k[i] >> shift) & 2047) + 1]++;
        for (int b = 0; b < 2048; ++b) cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < n; ++i) { const size_t d = cnt[(k[i] >> shift) & 2047]++; k2[d] = k[i]; ids2[d] = ids[i]; }
        k.swap(k2); ids.swap(ids2);
    }
}

}  // namespace

// Bin Gaussians into tiles. Returns (isect_offsets [C*TH*TW+1] int32, flatten_ids [n_isects] int32)
// where flatten_ids holds camera-flattened ids c*N+g, sorted by depth (ties by id) inside each tile.
std::vector<torch::Tensor> bin_gaussians(torch::Tensor means2d,  // [C, N, 2]
                                         torch::Tensor radii,    // [C, N, 2] int32
                                         torch::Tensor depths,   // [C, N]
                                         int64_t width, int64_t height, int64_t tile_size) {
    TORCH_CHECK(means2d.dtype() == torch::kFloat32 && depths.dtype() == torch::kFloat32, "float32 required");
    TORCH_CHECK(radii.dtype() == torch::kInt32, "radii must be int32");
    means2d = means2d.contiguous(); radii = radii.contiguous(); depths = depths.contiguous();
    const int64_t C = means2d.size(0), N = means2d.size(1);
    const int TW = (width + tile_size - 1) / tile_size, TH = (height + tile_size - 1) / tile_size;
    const int64_t T = (int64_t)TH * TW;
    const float* m = means2d.data_ptr<float>();
    const int* r = radii.data_ptr<int>();
    const float* d = depths.data_ptr<float>();
    auto offsets = torch::zeros({C * T + 1}, torch::kInt32);
    int* off = offsets.data_ptr<int>();
    std::vector<std::vector<int>> order(C);
    // tile rectangle of each Gaussian, as gsplat's isect_tiles
    auto rect = [&](int64_t i, int& tx0, int& tx1, int& ty0, int& ty1) {
        const float mx = m[2 * i], my = m[2 * i + 1];
        tx0 = std::min(TW, std::max(0, (int)std::floor((mx - r[2 * i]) / tile_size)));
        tx1 = std::min(TW, std::max(0, (int)std::ceil((mx + r[2 * i]) / tile_size)));
        ty0 = std::min(TH, std::max(0, (int)std::floor((my - r[2 * i + 1]) / tile_size)));
        ty1 = std::min(TH, std::max(0, (int)std::ceil((my + r[2 * i + 1]) / tile_size)));
    };
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            auto& o = order[c];
            for (int64_t g = 0; g < N; ++g) {
                const int64_t i = c * N + g;
                if (r[2 * i] > 0 && r[2 * i + 1] > 0) o.push_back((int)g);
            }
            radix_sort_by_key(o, d + c * N);
        }
    });
    // count
    for (int64_t c = 0; c < C; ++c)
        for (int g : order[c]) {
            int tx0, tx1, ty0, ty1; rect(c * N + g, tx0, tx1, ty0, ty1);
            for (int ty = ty0; ty < ty1; ++ty)
                for (int tx = tx0; tx < tx1; ++tx) off[c * T + ty * TW + tx + 1]++;
        }
    for (int64_t k = 0; k < C * T; ++k) off[k + 1] += off[k];
    auto ids = torch::empty({(int64_t)off[C * T]}, torch::kInt32);
    int* fid = ids.data_ptr<int>();
    std::vector<int> fill(off, off + C * T);
    // fill in depth order, so each tile's list comes out sorted
    for (int64_t c = 0; c < C; ++c)
        for (int g : order[c]) {
            int tx0, tx1, ty0, ty1; rect(c * N + g, tx0, tx1, ty0, ty1);
            for (int ty = ty0; ty < ty1; ++ty)
                for (int tx = tx0; tx < tx1; ++tx) fid[fill[c * T + ty * TW + tx]++] = (int)(c * N + g);
        }
    return {offsets, ids};
}

template <int D>
std::vector<torch::Tensor> fwd_impl(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                    torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                    int64_t ts, torch::Tensor offsets, torch::Tensor ids, bool for_backward) {
    const int64_t C = means2d.size(0);
    const int TW = (W + ts - 1) / ts, TH = (H + ts - 1) / ts;
    const int64_t T = (int64_t)TH * TW;
    auto out = torch::empty({C, H, W, D}, torch::kFloat32);
    auto out_alpha = torch::empty({C, H, W, 1}, torch::kFloat32);
    auto last = for_backward ? torch::empty({C, H, W}, torch::kInt32) : torch::empty({0}, torch::kInt32);
    auto t_final = for_backward ? torch::empty({C, H, W}, torch::kFloat32) : torch::empty({0}, torch::kFloat32);
    const auto gp = pack<D>(means2d, conics, colors, opacities, radii, W, H);
    FwdArgs<D> a{gp.data(), offsets.data_ptr<int>(), ids.data_ptr<int>(), T, TW, (int)ts, (int)W, (int)H,
                 out.data_ptr<float>(), out_alpha.data_ptr<float>(),
                 for_backward ? last.data_ptr<int>() : nullptr, for_backward ? t_final.data_ptr<float>() : nullptr};
    const auto order = tile_order(a.off, C * T);
#ifdef IPSM_X86
    if (g_isa == 1) { parallel_tiles(order, [&](int64_t t, Scratch& s) { avx2::fwd_tile<D>(a, t, s); }); return {out, out_alpha, last, t_final}; }
#endif
    parallel_tiles(order, [&](int64_t t, Scratch& s) { generic::fwd_tile<D>(a, t, s); });
    return {out, out_alpha, last, t_final};
}

template <int D>
std::vector<torch::Tensor> bwd_impl(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                    torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                    int64_t ts, torch::Tensor offsets, torch::Tensor ids,
                                    torch::Tensor t_final, torch::Tensor last,
                                    torch::Tensor v_out, torch::Tensor v_alpha_out) {
    const int64_t C = means2d.size(0), N = means2d.size(1);
    const int TW = (W + ts - 1) / ts, TH = (H + ts - 1) / ts;
    const int64_t T = (int64_t)TH * TW;
    const int64_t n_isect = ids.size(0);
    constexpr int R = D + 6;  // per-intersection record: colour D, conic 3, mean2d 2, opacity 1
    auto rec = torch::empty({n_isect, R}, torch::kFloat32);
    const auto gp = pack<D>(means2d, conics, colors, opacities, radii, W, H);
    BwdArgs<D> a{gp.data(), offsets.data_ptr<int>(), ids.data_ptr<int>(), T, TW, (int)ts, (int)W, (int)H,
                 t_final.data_ptr<float>(), last.data_ptr<int>(), v_out.data_ptr<float>(), v_alpha_out.data_ptr<float>(),
                 rec.data_ptr<float>()};
    const auto order = tile_order(a.off, C * T);
#ifdef IPSM_X86
    if (g_isa == 1) parallel_tiles(order, [&](int64_t t, Scratch& s) { avx2::bwd_tile<D>(a, t, s); });
    else
#endif
    parallel_tiles(order, [&](int64_t t, Scratch& s) { generic::bwd_tile<D>(a, t, s); });
    // reduce the intersection records per Gaussian (serial, deterministic order)
    auto v_colors = torch::zeros({C, N, D}, torch::kFloat32);
    auto v_conics = torch::zeros({C, N, 3}, torch::kFloat32);
    auto v_means2d = torch::zeros({C, N, 2}, torch::kFloat32);
    auto v_opac = torch::zeros({C, N}, torch::kFloat32);
    float* vcol = v_colors.data_ptr<float>(); float* vcon = v_conics.data_ptr<float>();
    float* vm = v_means2d.data_ptr<float>(); float* vop = v_opac.data_ptr<float>();
    const int* fid = a.fid; const float* rc = a.rec;
    for (int64_t k = 0; k < n_isect; ++k) {
        const int64_t g = fid[k]; const float* q = rc + k * R;
        for (int j = 0; j < D; ++j) vcol[g * D + j] += q[j];
        vcon[3 * g] += q[D]; vcon[3 * g + 1] += q[D + 1]; vcon[3 * g + 2] += q[D + 2];
        vm[2 * g] += q[D + 3]; vm[2 * g + 1] += q[D + 4]; vop[g] += q[D + 5];
    }
    return {v_means2d, v_conics, v_colors, v_opac};
}

#define DISPATCH_D(D_, FN, ...)                                                    \
    switch (D_) {                                                                  \
        case 1: return FN<1>(__VA_ARGS__);                                         \
        case 2: return FN<2>(__VA_ARGS__);                                         \
        case 3: return FN<3>(__VA_ARGS__);                                         \
        case 4: return FN<4>(__VA_ARGS__);                                         \
        case 5: return FN<5>(__VA_ARGS__);                                         \
        case 8: return FN<8>(__VA_ARGS__);                                         \
        default: TORCH_CHECK(false, "rasterize.cpp supports 1-5 or 8 channels, got ", D_); \
    }

static void check(const torch::Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

std::vector<torch::Tensor> rasterize_fwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                         torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                         int64_t ts, torch::Tensor offsets, torch::Tensor ids, bool for_backward) {
    check(means2d, "means2d"); check(conics, "conics"); check(colors, "colors"); check(opacities, "opacities");
    check(radii, "radii");
    TORCH_CHECK(ts >= 1 && ts <= 64, "tile_size must be in [1, 64], got ", ts);
    DISPATCH_D(colors.size(2), fwd_impl, means2d, conics, colors, opacities, radii, W, H, ts, offsets, ids, for_backward);
}

std::vector<torch::Tensor> rasterize_bwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                         torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                         int64_t ts, torch::Tensor offsets, torch::Tensor ids,
                                         torch::Tensor t_final, torch::Tensor last, torch::Tensor v_out,
                                         torch::Tensor v_alpha) {
    check(v_out, "v_out"); check(v_alpha, "v_alpha"); check(t_final, "t_final"); check(last, "last");
    TORCH_CHECK(last.numel() == v_alpha.numel(), "rasterize_bwd needs the buffers of a forward run with for_backward=True");
    DISPATCH_D(colors.size(2), bwd_impl, means2d, conics, colors, opacities, radii, W, H, ts, offsets, ids,
               t_final, last, v_out, v_alpha);
}

#include "project.h"
#include "sh.h"
#include "ssim.h"

std::string simd_isa() { return g_isa == 1 ? "avx2" : "generic"; }

std::vector<std::string> simd_isas() {
    std::vector<std::string> v{"generic"};
#ifdef IPSM_X86
    if (__builtin_cpu_supports("avx2")) v.push_back("avx2");
#endif
    return v;
}

void set_simd_isa(const std::string& name) {
    const auto ok = simd_isas();
    TORCH_CHECK(std::find(ok.begin(), ok.end(), name) != ok.end(), "simd isa '", name, "' is not available on this CPU; choose one of ",
                c10::Join(", ", ok));
    g_isa = name == "avx2" ? 1 : 0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
    mod.def("bin_gaussians", &bin_gaussians, "depth-sorted per-tile Gaussian lists");
    mod.def("rasterize_fwd", &rasterize_fwd, "front-to-back tile compositing");
    mod.def("rasterize_bwd", &rasterize_bwd, "back-to-front gradient recurrence");
    mod.def("project_fwd", &project_fwd, "EWA projection: radii, means2d, depths, conics");
    mod.def("project_bwd", &project_bwd, "gradients of the projection w.r.t. means, quats, scales");
    mod.def("sh_fwd", &sh_fwd, "view-dependent colours from SH coefficients (degree 0-3)");
    mod.def("sh_bwd", &sh_bwd, "gradients of the SH colours w.r.t. means and coefficients");
    mod.def("ssim_fwd", &ssim_fwd, "mean SSIM of an image pair (3DGS window) and the blurred statistics");
    mod.def("ssim_bwd", &ssim_bwd, "gradient of the mean SSIM w.r.t. the prediction");
    mod.def("simd_isa", &simd_isa, "instruction set the kernels run with ('avx2' or 'generic')");
    mod.def("simd_isas", &simd_isas, "instruction sets available on this CPU");
    mod.def("set_simd_isa", &set_simd_isa, "choose the kernels' instruction set ('avx2' or 'generic')");
}
