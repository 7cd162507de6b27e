// The mean SSIM of one image pair as 3DGS computes it (ipsm.metrics.ssim: 11-tap Gaussian window, sigma 1.5,
// per channel, zero padding, C1 = 0.01^2, C2 = 0.03^2), forward and hand-written backward to the prediction,
// fused: the five local statistics of every channel are blurred by one separable pass over planar buffers, the
// SSIM formula and its derivatives are evaluated per pixel, and the backward blurs three gradient maps per
// channel (the window is symmetric and zero-padded, so the adjoint of the blur is the blur itself).
// Included by rasterize.cpp; templated on the scalar type so the notebook checks the backward in float64.

namespace ssimk {

// dst[m] = G * src[m] for M planes of H x W (zero padding), via tmp; rows in parallel
template <typename T> void blur(const T* src, T* tmp, T* dst, int64_t M, int64_t H, int64_t W, const T* g, int R) {
    at::parallel_for(0, M * H, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {                       // horizontal: tmp row = sum_k g[k] src[x + k - R]
            const T* s = src + r * W; T* t = tmp + r * W;
            for (int64_t x = 0; x < W; ++x) t[x] = 0;
            for (int k = -R; k <= R; ++k) {
                const T gk = g[k + R];
                const int64_t x0 = std::max<int64_t>(0, -k), x1 = std::min<int64_t>(W, W - k);
                for (int64_t x = x0; x < x1; ++x) t[x] += gk * s[x + k];
            }
        }
    });
    at::parallel_for(0, M * H, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {                       // vertical
            const int64_t m = r / H, y = r % H;
            T* d = dst + r * W;
            for (int64_t x = 0; x < W; ++x) d[x] = 0;
            for (int k = -R; k <= R; ++k) {
                if (y + k < 0 || y + k >= H) continue;
                const T gk = g[k + R]; const T* t = tmp + (m * H + y + k) * W;
                for (int64_t x = 0; x < W; ++x) d[x] += gk * t[x];
            }
        }
    });
}

constexpr double kC1 = 0.01 * 0.01, kC2 = 0.03 * 0.03;

}  // namespace ssimk

// img, gt [H, W, C]; window [2R+1]. Returns the mean SSIM (0-dim) and the blurred statistics [5C, H, W]
// (mu_x, mu_y, E[x^2], E[y^2], E[xy] per channel) that the backward reuses.
std::vector<torch::Tensor> ssim_fwd(torch::Tensor img, torch::Tensor gt, torch::Tensor window) {
    TORCH_CHECK(img.dim() == 3 && img.sizes() == gt.sizes(), "ssim_fwd: img and gt must be [H, W, C] of the same shape");
    TORCH_CHECK(window.dim() == 1 && window.size(0) % 2 == 1, "ssim_fwd: window must be [2R+1]");
    const int64_t H = img.size(0), W = img.size(1), C = img.size(2), R = window.size(0) / 2;
    auto stats = torch::empty({5 * C, H, W}, img.options()), tmp = torch::empty({5 * C, H, W}, img.options());
    auto blurred = torch::empty({5 * C, H, W}, img.options());
    double total = 0;
    AT_DISPATCH_FLOATING_TYPES(img.scalar_type(), "ssim_fwd", [&] {
        using T = scalar_t;
        const T* x = img.data_ptr<T>(); const T* y = gt.data_ptr<T>(); T* s = stats.data_ptr<T>();
        const int64_t P = H * W;
        at::parallel_for(0, P, 4096, [&](int64_t b, int64_t e) {
            for (int64_t p = b; p < e; ++p)
                for (int64_t c = 0; c < C; ++c) {
                    const T a = x[p * C + c], v = y[p * C + c];
                    s[c * P + p] = a; s[(C + c) * P + p] = v; s[(2 * C + c) * P + p] = a * a;
                    s[(3 * C + c) * P + p] = v * v; s[(4 * C + c) * P + p] = a * v;
                }
        });
        T* m = blurred.data_ptr<T>();
        ssimk::blur<T>(s, tmp.data_ptr<T>(), m, 5 * C, H, W, window.data_ptr<T>(), (int)R);
        std::vector<double> rows(H, 0.0);                    // per-row partial sums, added in order: deterministic
        at::parallel_for(0, H, 8, [&](int64_t b, int64_t e) {
            for (int64_t yy = b; yy < e; ++yy) {
                double acc = 0;
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t xx = 0; xx < W; ++xx) {
                        const int64_t p = yy * W + xx;
                        const T mx = m[c * P + p], my = m[(C + c) * P + p];
                        const T sxx = m[(2 * C + c) * P + p] - mx * mx, syy = m[(3 * C + c) * P + p] - my * my;
                        const T sxy = m[(4 * C + c) * P + p] - mx * my;
                        acc += ((2 * mx * my + T(ssimk::kC1)) * (2 * sxy + T(ssimk::kC2))) /
                               ((mx * mx + my * my + T(ssimk::kC1)) * (sxx + syy + T(ssimk::kC2)));
                    }
                rows[yy] = acc;
            }
        });
        for (double r : rows) total += r;
    });
    return {torch::full({}, total / double(H * W * C), img.options()), blurred};
}

// d(mean SSIM)/d img [H, W, C], scaled by the upstream gradient v (0-dim)
torch::Tensor ssim_bwd(torch::Tensor img, torch::Tensor gt, torch::Tensor window, torch::Tensor blurred, torch::Tensor v) {
    const int64_t H = img.size(0), W = img.size(1), C = img.size(2), R = window.size(0) / 2, P = H * W;
    auto maps = torch::empty({3 * C, H, W}, img.options()), tmp = torch::empty({3 * C, H, W}, img.options());
    auto blurred_maps = torch::empty({3 * C, H, W}, img.options()), v_img = torch::empty_like(img);
    AT_DISPATCH_FLOATING_TYPES(img.scalar_type(), "ssim_bwd", [&] {
        using T = scalar_t;
        const T* m = blurred.data_ptr<T>(); T* g = maps.data_ptr<T>();
        const T w = v.item<T>() / T(P * C);
        at::parallel_for(0, P, 4096, [&](int64_t b, int64_t e) {
            for (int64_t p = b; p < e; ++p)
                for (int64_t c = 0; c < C; ++c) {
                    const T mx = m[c * P + p], my = m[(C + c) * P + p];
                    const T sxx = m[(2 * C + c) * P + p] - mx * mx, syy = m[(3 * C + c) * P + p] - my * my;
                    const T sxy = m[(4 * C + c) * P + p] - mx * my;
                    const T A1 = 2 * mx * my + T(ssimk::kC1), A2 = 2 * sxy + T(ssimk::kC2);
                    const T B1 = mx * mx + my * my + T(ssimk::kC1), B2 = sxx + syy + T(ssimk::kC2);
                    const T S = (A1 * A2) / (B1 * B2);
                    // S(mu_x, E[x^2], E[xy]) with sxx = E[x^2] - mu_x^2, sxy = E[xy] - mu_x mu_y
                    g[c * P + p] = w * S * (2 * my / A1 - 2 * my / A2 - 2 * mx / B1 + 2 * mx / B2);
                    g[(C + c) * P + p] = -w * S / B2;
                    g[(2 * C + c) * P + p] = 2 * w * S / A2;
                }
        });
        T* gb = blurred_maps.data_ptr<T>();
        ssimk::blur<T>(g, tmp.data_ptr<T>(), gb, 3 * C, H, W, window.data_ptr<T>(), (int)R);
        const T* x = img.data_ptr<T>(); const T* y = gt.data_ptr<T>(); T* o = v_img.data_ptr<T>();
        at::parallel_for(0, P, 4096, [&](int64_t b, int64_t e) {
            for (int64_t p = b; p < e; ++p)
                for (int64_t c = 0; c < C; ++c)
                    o[p * C + c] = gb[c * P + p] + 2 * x[p * C + c] * gb[(C + c) * P + p] + y[p * C + c] * gb[(2 * C + c) * P + p];
        });
    });
    return v_img;
}
