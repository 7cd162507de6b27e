// Tile-based rasterization of 2D Gaussians on the CPU (forward and hand-written backward).
//
// The maths follows 3DGS / gsplat's RasterizeToPixels3DGS{Fwd,Bwd}.cu: pixel centres at (x+0.5, y+0.5),
// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with conic (a, b, c) and delta = mean2d - pixel,
// alpha = min(0.999, opacity * exp(-sigma)), skip when sigma < 0 or alpha < 1/255, stop a pixel
// (excluding the current Gaussian) once the next transmittance would fall to <= 1e-4.
//
// CPU layout differs from CUDA: each tile is processed by one thread, Gaussian-major: for each
// Gaussian of the tile's depth-sorted list we touch only the pixels of its bounding box inside
// the tile, keeping per-pixel state (T, accumulated colour, last index) in small arrays.
// The backward pass walks the same lists back to front, recovers T by dividing by (1 - alpha),
// and writes one gradient record per (tile, Gaussian) intersection, so no two threads ever write
// the same memory; a final serial pass sums the records per Gaussian (deterministic, no atomics).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr float ALPHA_THRESHOLD = 1.f / 255.f;
constexpr float ALPHA_MAX = 0.999f;
constexpr float T_EPS = 1e-4f;

struct Bbox { int x0, x1, y0, y1; };  // pixel range [x0, x1) x [y0, y1)

// Pixel bounding box of a Gaussian (centre m, radii r), padded by one pixel against rounding.
inline Bbox gauss_bbox(float mx, float my, int rx, int ry, int W, int H) {
    Bbox b;
    b.x0 = std::max(0, (int)std::floor(mx - rx - 0.5f) - 1);
    b.x1 = std::min(W, (int)std::ceil(mx + rx - 0.5f) + 2);
    b.y0 = std::max(0, (int)std::floor(my - ry - 0.5f) - 1);
    b.y1 = std::min(H, (int)std::ceil(my + ry - 0.5f) + 2);
    return b;
}

template <typename F> void parallel_tiles(int64_t n, F f) {
    // dynamic scheduling: tile costs vary by orders of magnitude
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
    for (int64_t t = 0; t < n; ++t) f(t);
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
            const float* dc = d + c * N;
            std::sort(o.begin(), o.end(), [dc](int a, int b) { return dc[a] < dc[b] || (dc[a] == dc[b] && a < b); });
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
                                    int64_t ts, torch::Tensor offsets, torch::Tensor ids) {
    const int64_t C = means2d.size(0);
    const int TW = (W + ts - 1) / ts, TH = (H + ts - 1) / ts;
    const int64_t T = (int64_t)TH * TW;
    auto out = torch::zeros({C, H, W, D}, torch::kFloat32);
    auto out_alpha = torch::zeros({C, H, W, 1}, torch::kFloat32);
    auto last = torch::zeros({C, H, W}, torch::kInt32);  // number of list entries each pixel consumed
    const float* m = means2d.data_ptr<float>(); const float* cn = conics.data_ptr<float>();
    const float* col = colors.data_ptr<float>(); const float* op = opacities.data_ptr<float>();
    const int* r = radii.data_ptr<int>(); const int* off = offsets.data_ptr<int>(); const int* fid = ids.data_ptr<int>();
    float* o = out.data_ptr<float>(); float* oa = out_alpha.data_ptr<float>(); int* ol = last.data_ptr<int>();
    parallel_tiles(C * T, [&](int64_t tile) {
        const int64_t c = tile / T; const int tid = tile % T;
        const int px0 = (tid % TW) * ts, py0 = (tid / TW) * ts;
        const int pw = std::min<int>(ts, W - px0), ph = std::min<int>(ts, H - py0);
        const int P = pw * ph;
        std::vector<float> Tr(P, 1.f), acc(P * D, 0.f);
        std::vector<int> lst(P, 0); std::vector<char> done(P, 0);
        int n_done = 0;
        for (int k = off[tile]; k < off[tile + 1] && n_done < P; ++k) {
            const int64_t g = fid[k];
            const float mx = m[2 * g], my = m[2 * g + 1];
            const float ca = cn[3 * g], cb = cn[3 * g + 1], cc = cn[3 * g + 2];
            const float opac = op[g];
            const float smax = std::log(opac / ALPHA_THRESHOLD) + 1e-3f;  // sigma beyond this => alpha < 1/255
            const float* cg = col + g * D;
            Bbox b = gauss_bbox(mx, my, r[2 * g], r[2 * g + 1], W, H);
            const int x0 = std::max(b.x0, px0) - px0, x1 = std::min(b.x1, px0 + pw) - px0;
            const int y0 = std::max(b.y0, py0) - py0, y1 = std::min(b.y1, py0 + ph) - py0;
            for (int y = y0; y < y1; ++y) {
                const float dy = my - (py0 + y + 0.5f);
                for (int x = x0; x < x1; ++x) {
                    const int p = y * pw + x;
                    if (done[p]) continue;
                    const float dx = mx - (px0 + x + 0.5f);
                    const float sigma = 0.5f * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
                    if (sigma < 0.f || sigma > smax) continue;
                    const float alpha = std::min(ALPHA_MAX, opac * std::exp(-sigma));
                    if (alpha < ALPHA_THRESHOLD) continue;
                    const float next_T = Tr[p] * (1.f - alpha);
                    if (next_T <= T_EPS) { done[p] = 1; ++n_done; continue; }
                    const float vis = alpha * Tr[p];
                    for (int j = 0; j < D; ++j) acc[p * D + j] += cg[j] * vis;
                    Tr[p] = next_T;
                    lst[p] = k - off[tile] + 1;
                }
            }
        }
        for (int y = 0; y < ph; ++y)
            for (int x = 0; x < pw; ++x) {
                const int p = y * pw + x;
                const int64_t pix = (c * H + py0 + y) * W + px0 + x;
                for (int j = 0; j < D; ++j) o[pix * D + j] = acc[p * D + j];
                oa[pix] = 1.f - Tr[p];
                ol[pix] = lst[p];
            }
    });
    return {out, out_alpha, last};
}

template <int D>
std::vector<torch::Tensor> bwd_impl(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                    torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                    int64_t ts, torch::Tensor offsets, torch::Tensor ids,
                                    torch::Tensor out_alpha, torch::Tensor last,
                                    torch::Tensor v_out, torch::Tensor v_alpha_out) {
    const int64_t C = means2d.size(0), N = means2d.size(1);
    const int TW = (W + ts - 1) / ts, TH = (H + ts - 1) / ts;
    const int64_t T = (int64_t)TH * TW;
    const int64_t n_isect = ids.size(0);
    constexpr int R = D + 6;  // per-intersection record: colour D, conic 3, mean2d 2, opacity 1
    auto rec = torch::empty({n_isect, R}, torch::kFloat32);
    const float* m = means2d.data_ptr<float>(); const float* cn = conics.data_ptr<float>();
    const float* col = colors.data_ptr<float>(); const float* op = opacities.data_ptr<float>();
    const int* r = radii.data_ptr<int>(); const int* off = offsets.data_ptr<int>(); const int* fid = ids.data_ptr<int>();
    const float* oa = out_alpha.data_ptr<float>(); const int* ol = last.data_ptr<int>();
    const float* vo = v_out.data_ptr<float>(); const float* va = v_alpha_out.data_ptr<float>();
    float* rc = rec.data_ptr<float>();
    parallel_tiles(C * T, [&](int64_t tile) {
        const int64_t c = tile / T; const int tid = tile % T;
        const int px0 = (tid % TW) * ts, py0 = (tid / TW) * ts;
        const int pw = std::min<int>(ts, W - px0), ph = std::min<int>(ts, H - py0);
        const int P = pw * ph;
        std::vector<float> Tr(P), Tf(P), buf(P * D, 0.f), vc(P * D), vaa(P);
        std::vector<int> lst(P);
        int max_last = 0;
        for (int y = 0; y < ph; ++y)
            for (int x = 0; x < pw; ++x) {
                const int p = y * pw + x;
                const int64_t pix = (c * H + py0 + y) * W + px0 + x;
                Tf[p] = Tr[p] = 1.f - oa[pix];
                lst[p] = ol[pix]; max_last = std::max(max_last, lst[p]);
                for (int j = 0; j < D; ++j) vc[p * D + j] = vo[pix * D + j];
                vaa[p] = va[pix];
            }
        const int k0 = off[tile];
        for (int k = off[tile + 1] - 1; k >= k0; --k) {
            float* out = rc + (int64_t)k * R;
            for (int j = 0; j < R; ++j) out[j] = 0.f;
            const int i = k - k0;
            if (i >= max_last) continue;
            const int64_t g = fid[k];
            const float mx = m[2 * g], my = m[2 * g + 1];
            const float ca = cn[3 * g], cb = cn[3 * g + 1], cc = cn[3 * g + 2];
            const float opac = op[g];
            const float smax = std::log(opac / ALPHA_THRESHOLD) + 1e-3f;
            const float* cg = col + g * D;
            float g_col[D] = {0.f}; float g_a = 0.f, g_b = 0.f, g_c = 0.f, g_x = 0.f, g_y = 0.f, g_o = 0.f;
            Bbox b = gauss_bbox(mx, my, r[2 * g], r[2 * g + 1], W, H);
            const int x0 = std::max(b.x0, px0) - px0, x1 = std::min(b.x1, px0 + pw) - px0;
            const int y0 = std::max(b.y0, py0) - py0, y1 = std::min(b.y1, py0 + ph) - py0;
            for (int y = y0; y < y1; ++y) {
                const float dy = my - (py0 + y + 0.5f);
                for (int x = x0; x < x1; ++x) {
                    const int p = y * pw + x;
                    if (i >= lst[p]) continue;
                    const float dx = mx - (px0 + x + 0.5f);
                    const float sigma = 0.5f * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
                    if (sigma < 0.f || sigma > smax) continue;
                    const float vis = std::exp(-sigma);
                    const float alpha = std::min(ALPHA_MAX, opac * vis);
                    if (alpha < ALPHA_THRESHOLD) continue;
                    const float ra = 1.f / (1.f - alpha);
                    Tr[p] *= ra;
                    const float fac = alpha * Tr[p];
                    float v_alpha = 0.f;
                    for (int j = 0; j < D; ++j) {
                        g_col[j] += fac * vc[p * D + j];
                        v_alpha += (cg[j] * Tr[p] - buf[p * D + j] * ra) * vc[p * D + j];
                    }
                    v_alpha += Tf[p] * ra * vaa[p];
                    if (opac * vis <= ALPHA_MAX) {
                        const float v_sigma = -opac * vis * v_alpha;
                        g_a += 0.5f * v_sigma * dx * dx;
                        g_b += v_sigma * dx * dy;
                        g_c += 0.5f * v_sigma * dy * dy;
                        g_x += v_sigma * (ca * dx + cb * dy);
                        g_y += v_sigma * (cb * dx + cc * dy);
                        g_o += vis * v_alpha;
                    }
                    for (int j = 0; j < D; ++j) buf[p * D + j] += cg[j] * fac;
                }
            }
            for (int j = 0; j < D; ++j) out[j] = g_col[j];
            out[D] = g_a; out[D + 1] = g_b; out[D + 2] = g_c; out[D + 3] = g_x; out[D + 4] = g_y; out[D + 5] = g_o;
        }
    });
    // reduce the intersection records per Gaussian (serial, deterministic order)
    auto v_colors = torch::zeros({C, N, D}, torch::kFloat32);
    auto v_conics = torch::zeros({C, N, 3}, torch::kFloat32);
    auto v_means2d = torch::zeros({C, N, 2}, torch::kFloat32);
    auto v_opac = torch::zeros({C, N}, torch::kFloat32);
    float* vcol = v_colors.data_ptr<float>(); float* vcon = v_conics.data_ptr<float>();
    float* vm = v_means2d.data_ptr<float>(); float* vop = v_opac.data_ptr<float>();
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
                                         int64_t ts, torch::Tensor offsets, torch::Tensor ids) {
    check(means2d, "means2d"); check(conics, "conics"); check(colors, "colors"); check(opacities, "opacities");
    check(radii, "radii");
    TORCH_CHECK(ts >= 1 && ts <= 64, "tile_size must be in [1, 64], got ", ts);
    DISPATCH_D(colors.size(2), fwd_impl, means2d, conics, colors, opacities, radii, W, H, ts, offsets, ids);
}

std::vector<torch::Tensor> rasterize_bwd(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                         torch::Tensor opacities, torch::Tensor radii, int64_t W, int64_t H,
                                         int64_t ts, torch::Tensor offsets, torch::Tensor ids,
                                         torch::Tensor out_alpha, torch::Tensor last, torch::Tensor v_out,
                                         torch::Tensor v_alpha) {
    check(v_out, "v_out"); check(v_alpha, "v_alpha");
    DISPATCH_D(colors.size(2), bwd_impl, means2d, conics, colors, opacities, radii, W, H, ts, offsets, ids,
               out_alpha, last, v_out, v_alpha);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
    mod.def("bin_gaussians", &bin_gaussians, "depth-sorted per-tile Gaussian lists");
    mod.def("rasterize_fwd", &rasterize_fwd, "front-to-back tile compositing");
    mod.def("rasterize_bwd", &rasterize_bwd, "back-to-front gradient recurrence");
}
