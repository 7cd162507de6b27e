// View-dependent colours from spherical harmonics (forward and hand-written backward), the maths of
// ipsm.render.sh_colors (gsplat's _spherical_harmonics: Sloan's fast bases of the normalised direction
// mean - camera centre, degree 0-3, + 0.5, clamped at 0). One Gaussian at a time, all cameras in an inner loop,
// so the [C, N, K, 3] expansion and products of the torch version are never materialised.
// Included by rasterize.cpp; templated on the scalar type so the notebook checks the backward in float64.

namespace shk {

constexpr int kMaxBases = 16;  // degree 3

// bases b[0..nb) at the unit direction (x, y, z), gsplat's order and constants
template <typename T> inline void bases(T x, T y, T z, int nb, T* b) {
    b[0] = T(0.2820947917738781);
    if (nb <= 1) return;
    const T a1 = T(-0.48860251190292);
    b[1] = a1 * y; b[2] = -a1 * z; b[3] = a1 * x;
    if (nb <= 4) return;
    const T z2 = z * z, fc1 = x * x - y * y, fs1 = 2 * x * y, b2 = T(-1.092548430592079) * z, a2 = T(0.5462742152960395);
    b[6] = T(0.9461746957575601) * z2 - T(0.3153915652525201);
    b[7] = b2 * x; b[5] = b2 * y; b[8] = a2 * fc1; b[4] = a2 * fs1;
    if (nb <= 9) return;
    const T c3 = T(-2.285228997322329) * z2 + T(0.4570457994644658), b3 = T(1.445305721320277) * z, a3 = T(-0.5900435899266435);
    const T fc2 = x * fc1 - y * fs1, fs2 = x * fs1 + y * fc1;
    b[12] = z * (T(1.865881662950577) * z2 - T(1.119528997770346));
    b[13] = c3 * x; b[11] = c3 * y; b[14] = b3 * fc1; b[10] = b3 * fs1; b[15] = a3 * fc2; b[9] = a3 * fs2;
}

// d(sum_k vb[k] b[k]) / d(x, y, z), added to g (x, y, z treated as independent, as autograd does before the normalisation)
template <typename T> inline void bases_vjp(T x, T y, T z, int nb, const T* vb, T* g) {
    if (nb <= 1) return;
    const T a1 = T(-0.48860251190292);
    g[0] += a1 * vb[3]; g[1] += a1 * vb[1]; g[2] += -a1 * vb[2];
    if (nb <= 4) return;
    const T fc1 = x * x - y * y, fs1 = 2 * x * y, b2 = T(-1.092548430592079), a2 = T(0.5462742152960395);
    g[0] += b2 * z * vb[7] + 2 * a2 * (x * vb[8] + y * vb[4]);
    g[1] += b2 * z * vb[5] + 2 * a2 * (-y * vb[8] + x * vb[4]);
    g[2] += 2 * T(0.9461746957575601) * z * vb[6] + b2 * (x * vb[7] + y * vb[5]);
    if (nb <= 9) return;
    const T z2 = z * z, c3 = T(-2.285228997322329) * z2 + T(0.4570457994644658), dc3 = 2 * T(-2.285228997322329) * z;
    const T b3 = T(1.445305721320277), a3 = T(-0.5900435899266435);
    // fc2 = x^3 - 3 x y^2: d/dx = 3 fc1, d/dy = -3 fs1;  fs2 = 3 x^2 y - y^3: d/dx = 3 fs1, d/dy = 3 fc1
    g[0] += c3 * vb[13] + b3 * z * (2 * x * vb[14] + 2 * y * vb[10]) + 3 * a3 * (fc1 * vb[15] + fs1 * vb[9]);
    g[1] += c3 * vb[11] + b3 * z * (-2 * y * vb[14] + 2 * x * vb[10]) + 3 * a3 * (-fs1 * vb[15] + fc1 * vb[9]);
    g[2] += (3 * T(1.865881662950577) * z2 - T(1.119528997770346)) * vb[12] + dc3 * (x * vb[13] + y * vb[11])
          + b3 * (fc1 * vb[14] + fs1 * vb[10]);
}

// F.normalize(mean - campos): unit direction and the norm it divided by (max(|d|, 1e-12))
template <typename T> inline T direction(const T* mean, const T* campos, T* u) {
    T d[3] = {mean[0] - campos[0], mean[1] - campos[1], mean[2] - campos[2]};
    const T n = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), T(1e-12));
    for (int k = 0; k < 3; ++k) u[k] = d[k] / n;
    return n;
}

}  // namespace shk

static int sh_num_bases(torch::Tensor coeffs, int64_t degree) {
    TORCH_CHECK(degree >= 0 && degree <= 3, "the compiled SH evaluation supports degrees 0-3, got ", degree);
    const int nb = (int)((degree + 1) * (degree + 1));
    TORCH_CHECK(coeffs.dim() == 3 && coeffs.size(1) >= nb && coeffs.size(2) == 3, "coeffs must be [N, K >= ", nb, ", 3]");
    return nb;
}

// colors [C, N, 3] = max(sum_k b_k(dir) coeffs[:, k] + 0.5, 0)
torch::Tensor sh_fwd(torch::Tensor means, torch::Tensor coeffs, torch::Tensor campos, int64_t degree) {
    const int nb = sh_num_bases(coeffs, degree);
    const int64_t N = means.size(0), C = campos.size(0), K = coeffs.size(1);
    auto colors = torch::empty({C, N, 3}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_fwd", [&] {
        using T = scalar_t;
        const T* mp = means.data_ptr<T>(); const T* cp = coeffs.data_ptr<T>(); const T* pp = campos.data_ptr<T>();
        T* out = colors.data_ptr<T>();
        at::parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
            T u[3], bs[shk::kMaxBases];
            for (int64_t i = b; i < e; ++i)
                for (int64_t c = 0; c < C; ++c) {
                    shk::direction<T>(mp + 3 * i, pp + 3 * c, u);
                    shk::bases<T>(u[0], u[1], u[2], nb, bs);
                    const T* co = cp + 3 * K * i;
                    for (int ch = 0; ch < 3; ++ch) {
                        T s = 0;
                        for (int k = 0; k < nb; ++k) s += bs[k] * co[3 * k + ch];
                        out[3 * (c * N + i) + ch] = std::max(s + T(0.5), T(0));
                    }
                }
        });
    });
    return colors;
}

// v_means [N, 3], v_coeffs [N, K, 3] from v_colors [C, N, 3] (clamp_min's rule: gradient where s + 0.5 >= 0)
std::vector<torch::Tensor> sh_bwd(torch::Tensor means, torch::Tensor coeffs, torch::Tensor campos, int64_t degree,
                                  torch::Tensor v_colors) {
    const int nb = sh_num_bases(coeffs, degree);
    const int64_t N = means.size(0), C = campos.size(0), K = coeffs.size(1);
    auto v_means = torch::zeros_like(means), v_coeffs = torch::zeros_like(coeffs);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "sh_bwd", [&] {
        using T = scalar_t;
        const T* mp = means.data_ptr<T>(); const T* cp = coeffs.data_ptr<T>(); const T* pp = campos.data_ptr<T>();
        const T* gp = v_colors.data_ptr<T>(); T* om = v_means.data_ptr<T>(); T* oc = v_coeffs.data_ptr<T>();
        at::parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
            T u[3], bs[shk::kMaxBases], vb[shk::kMaxBases];
            for (int64_t i = b; i < e; ++i)
                for (int64_t c = 0; c < C; ++c) {
                    const T* g = gp + 3 * (c * N + i);
                    if (g[0] == 0 && g[1] == 0 && g[2] == 0) continue;   // not rendered
                    const T n = shk::direction<T>(mp + 3 * i, pp + 3 * c, u);
                    shk::bases<T>(u[0], u[1], u[2], nb, bs);
                    const T* co = cp + 3 * K * i;
                    T vc[3];
                    for (int ch = 0; ch < 3; ++ch) {
                        T s = 0;
                        for (int k = 0; k < nb; ++k) s += bs[k] * co[3 * k + ch];
                        vc[ch] = s + T(0.5) >= 0 ? g[ch] : T(0);
                    }
                    T* vco = oc + 3 * K * i;
                    for (int k = 0; k < nb; ++k) {
                        vb[k] = co[3 * k] * vc[0] + co[3 * k + 1] * vc[1] + co[3 * k + 2] * vc[2];
                        for (int ch = 0; ch < 3; ++ch) vco[3 * k + ch] += bs[k] * vc[ch];
                    }
                    if (nb <= 1) continue;
                    T vu[3] = {0, 0, 0};
                    shk::bases_vjp<T>(u[0], u[1], u[2], nb, vb, vu);
                    const T dot = vu[0] * u[0] + vu[1] * u[1] + vu[2] * u[2];   // through d / max(|d|, eps)
                    const bool clamped = n <= T(1e-12);
                    for (int k = 0; k < 3; ++k) om[3 * i + k] += (vu[k] - (clamped ? T(0) : u[k] * dot)) / n;
                }
        });
    });
    return {v_means, v_coeffs};
}
