// EWA projection of 3D Gaussians (forward and hand-written backward), the maths of ipsm.render.project_gaussians
// (and gsplat's fully_fused_projection): quaternion + scale -> covariance, world -> camera, perspective Jacobian with
// the 1.3x field-of-view clamp, 2D covariance + eps2d, conic, opacity-aware radii.
// Included by rasterize.cpp (one translation unit, so torch's headers are compiled once). Templated on the scalar
// type so the notebook can check the backward against autograd in float64.

namespace proj {

template <typename T> struct M3 { T m[3][3]; };

template <typename T> inline M3<T> quat_to_rotmat(T w, T x, T y, T z) {
    return {{{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
             {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
             {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}}};
}

// Per-Gaussian, per-camera intermediate values shared by forward and backward.
template <typename T> struct Fwd {
    T qn[4], qnorm; M3<T> R, M, S;   // normalised quaternion, rotation, M = R diag(s), Sigma = M M^T
    T p[3]; M3<T> Sc;                // camera-space mean and covariance
    T J[2][3], cov[2][2], det, detc; // Jacobian, 2D covariance (+eps2d), its determinant (clamped at 1e-10)
    bool clx, cly;                   // tx/tz, ty/tz clamped to the field-of-view limits
    T m2[2], conic[3];
};

template <typename T>
inline void forward(const T* mean, const T* quat, const T* scale, const T* vm, const T* K, int W, int H, T eps2d, Fwd<T>& f) {
    const T n = std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
    f.qnorm = std::max(n, T(1e-12));  // F.normalize
    for (int k = 0; k < 4; ++k) f.qn[k] = quat[k] / f.qnorm;
    f.R = quat_to_rotmat(f.qn[0], f.qn[1], f.qn[2], f.qn[3]);
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) f.M.m[j][k] = f.R.m[j][k] * scale[k];
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k)
        f.S.m[j][k] = f.M.m[j][0] * f.M.m[k][0] + f.M.m[j][1] * f.M.m[k][1] + f.M.m[j][2] * f.M.m[k][2];
    for (int j = 0; j < 3; ++j) f.p[j] = vm[4 * j] * mean[0] + vm[4 * j + 1] * mean[1] + vm[4 * j + 2] * mean[2] + vm[4 * j + 3];
    T RS[3][3];  // Rv Sigma
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k)
        RS[j][k] = vm[4 * j] * f.S.m[0][k] + vm[4 * j + 1] * f.S.m[1][k] + vm[4 * j + 2] * f.S.m[2][k];
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k)
        f.Sc.m[j][k] = RS[j][0] * vm[4 * k] + RS[j][1] * vm[4 * k + 1] + RS[j][2] * vm[4 * k + 2];
    const T fx = K[0], fy = K[4], cx = K[2], cy = K[5];
    const T tx = f.p[0], ty = f.p[1], tz = f.p[2];
    const T lxp = (W - cx) / fx + T(0.15) * W / fx, lxn = cx / fx + T(0.15) * W / fx;
    const T lyp = (H - cy) / fy + T(0.15) * H / fy, lyn = cy / fy + T(0.15) * H / fy;
    const T u = tx / tz, v = ty / tz;
    f.clx = u < -lxn || u > lxp; f.cly = v < -lyn || v > lyp;
    const T txc = tz * std::min(std::max(u, -lxn), lxp), tyc = tz * std::min(std::max(v, -lyn), lyp);
    f.J[0][0] = fx / tz; f.J[0][1] = 0; f.J[0][2] = -fx * txc / (tz * tz);
    f.J[1][0] = 0; f.J[1][1] = fy / tz; f.J[1][2] = -fy * tyc / (tz * tz);
    for (int a = 0; a < 2; ++a) for (int b = 0; b < 2; ++b) {
        T s = 0;
        for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) s += f.J[a][j] * f.Sc.m[j][k] * f.J[b][k];
        f.cov[a][b] = s + (a == b ? eps2d : T(0));
    }
    f.m2[0] = fx * tx / tz + cx; f.m2[1] = fy * ty / tz + cy;
    f.det = f.cov[0][0] * f.cov[1][1] - f.cov[0][1] * f.cov[1][0];
    f.detc = std::max(f.det, T(1e-10));
    f.conic[0] = f.cov[1][1] / f.detc; f.conic[1] = -(f.cov[0][1] + f.cov[1][0]) / 2 / f.detc; f.conic[2] = f.cov[0][0] / f.detc;
}

// Gradients of (means2d, depth, conic) -> mean, quat, scale, accumulated into vmean, vquat, vscale.
template <typename T>
inline void backward(const Fwd<T>& f, const T* scale, const T* vm, const T* K, const T* vm2, T vdepth, const T* vcon,
                     T* vmean, T* vquat, T* vscale) {
    const T fx = K[0], fy = K[4];
    const T tx = f.p[0], ty = f.p[1], tz = f.p[2];
    // conic = (C, -B, A) / det with cov2d = [[A, B], [B, C]]
    const T d = f.detc, num = vcon[0] * f.cov[1][1] - vcon[1] * (f.cov[0][1] + f.cov[1][0]) / 2 + vcon[2] * f.cov[0][0];
    const T gd = f.det > T(1e-10) ? -num / (d * d) : T(0);  // dL/d det
    T G[2][2];  // dL/d cov2d (symmetric)
    G[0][0] = vcon[2] / d + gd * f.cov[1][1];
    G[1][1] = vcon[0] / d + gd * f.cov[0][0];
    G[0][1] = G[1][0] = -vcon[1] / (2 * d) - gd * f.cov[1][0];
    // cov2d = J Sc J^T: dSc = J^T G J, dJ = 2 G J Sc
    T vSc[3][3], GJ[2][3], vJ[2][3];
    for (int a = 0; a < 2; ++a) for (int k = 0; k < 3; ++k) GJ[a][k] = G[a][0] * f.J[0][k] + G[a][1] * f.J[1][k];
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) vSc[j][k] = f.J[0][j] * GJ[0][k] + f.J[1][j] * GJ[1][k];
    for (int a = 0; a < 2; ++a) for (int k = 0; k < 3; ++k)
        vJ[a][k] = 2 * (GJ[a][0] * f.Sc.m[0][k] + GJ[a][1] * f.Sc.m[1][k] + GJ[a][2] * f.Sc.m[2][k]);
    // Jacobian entries and the clamped txc = tz clamp(tx / tz), tyc
    T vp[3] = {0, 0, vdepth};
    const T tz2 = tz * tz, tz3 = tz2 * tz;
    const T txc = -f.J[0][2] * tz2 / fx, tyc = -f.J[1][2] * tz2 / fy;
    vp[2] += -fx / tz2 * vJ[0][0] - fy / tz2 * vJ[1][1] + 2 * fx * txc / tz3 * vJ[0][2] + 2 * fy * tyc / tz3 * vJ[1][2];
    const T vtxc = -fx / tz2 * vJ[0][2], vtyc = -fy / tz2 * vJ[1][2];
    if (f.clx) vp[2] += vtxc * txc / tz; else vp[0] += vtxc;
    if (f.cly) vp[2] += vtyc * tyc / tz; else vp[1] += vtyc;
    // means2d
    vp[0] += fx / tz * vm2[0]; vp[1] += fy / tz * vm2[1];
    vp[2] += -fx * tx / tz2 * vm2[0] - fy * ty / tz2 * vm2[1];
    // p = Rv mean + t, Sc = Rv Sigma Rv^T
    for (int k = 0; k < 3; ++k) vmean[k] += vm[k] * vp[0] + vm[4 + k] * vp[1] + vm[8 + k] * vp[2];
    T A[3][3], vS[3][3];  // vS = Rv^T vSc Rv
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) A[j][k] = vSc[j][0] * vm[k] + vSc[j][1] * vm[4 + k] + vSc[j][2] * vm[8 + k];
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) vS[j][k] = vm[j] * A[0][k] + vm[4 + j] * A[1][k] + vm[8 + j] * A[2][k];
    // Sigma = M M^T: dM = (vS + vS^T) M ; M = R diag(s)
    T vR[3][3];
    for (int j = 0; j < 3; ++j) for (int k = 0; k < 3; ++k) {
        T vM = 0;
        for (int l = 0; l < 3; ++l) vM += (vS[j][l] + vS[l][j]) * f.M.m[l][k];
        vR[j][k] = vM * scale[k];
        vscale[k] += vM * f.R.m[j][k];
    }
    const T w = f.qn[0], x = f.qn[1], y = f.qn[2], z = f.qn[3];
    const T gq[4] = {
        2 * (-z * vR[0][1] + y * vR[0][2] + z * vR[1][0] - x * vR[1][2] - y * vR[2][0] + x * vR[2][1]),
        2 * (y * vR[0][1] + z * vR[0][2] + y * vR[1][0] - 2 * x * vR[1][1] - w * vR[1][2] + z * vR[2][0] + w * vR[2][1] - 2 * x * vR[2][2]),
        2 * (-2 * y * vR[0][0] + x * vR[0][1] + w * vR[0][2] + x * vR[1][0] + z * vR[1][2] - w * vR[2][0] + z * vR[2][1] - 2 * y * vR[2][2]),
        2 * (-2 * z * vR[0][0] - w * vR[0][1] + x * vR[0][2] + w * vR[1][0] - 2 * z * vR[1][1] + y * vR[1][2] + x * vR[2][0] + y * vR[2][1])};
    // q / max(|q|, eps)
    const T dot = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * z;
    const bool clamped = f.qnorm <= T(1e-12);
    for (int k = 0; k < 4; ++k) vquat[k] += (gq[k] - (clamped ? T(0) : f.qn[k] * dot)) / f.qnorm;
}

}  // namespace proj

// radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3]
std::vector<torch::Tensor> project_fwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales, torch::Tensor opacities,
                                       torch::Tensor viewmats, torch::Tensor Ks, int64_t W, int64_t H, double eps2d,
                                       double near_plane, double far_plane) {
    const int64_t N = means.size(0), C = viewmats.size(0);
    auto o = means.options();
    auto radii = torch::zeros({C, N, 2}, o.dtype(torch::kInt32));
    auto means2d = torch::empty({C, N, 2}, o), depths = torch::empty({C, N}, o), conics = torch::empty({C, N, 3}, o);
    const bool has_op = opacities.numel() > 0;
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
        using T = scalar_t;
        const T* mp = means.data_ptr<T>(); const T* qp = quats.data_ptr<T>(); const T* sp = scales.data_ptr<T>();
        const T* op = has_op ? opacities.data_ptr<T>() : nullptr;
        const T* vp = viewmats.data_ptr<T>(); const T* kp = Ks.data_ptr<T>();
        int* rp = radii.data_ptr<int>(); T* m2 = means2d.data_ptr<T>(); T* dp = depths.data_ptr<T>(); T* cp = conics.data_ptr<T>();
        at::parallel_for(0, N, 2048, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                for (int64_t c = 0; c < C; ++c) {
                    proj::Fwd<T> f;
                    proj::forward<T>(mp + 3 * i, qp + 4 * i, sp + 3 * i, vp + 16 * c, kp + 9 * c, W, H, (T)eps2d, f);
                    const int64_t ci = c * N + i;
                    m2[2 * ci] = f.m2[0]; m2[2 * ci + 1] = f.m2[1]; dp[ci] = f.p[2];
                    for (int k = 0; k < 3; ++k) cp[3 * ci + k] = f.conic[k];
                    // visibility and opacity-aware radius, as project_gaussians
                    T extend = 3.33;
                    bool valid = f.det > 0 && f.p[2] > near_plane && f.p[2] < far_plane;
                    if (op) {
                        valid = valid && op[i] >= T(1) / 255;
                        extend = std::min(extend, std::sqrt(2 * std::log(std::max(op[i], T(1) / 255) * 255)));
                    }
                    const T rx = std::ceil(extend * std::sqrt(std::max(f.cov[0][0], T(0))));
                    const T ry = std::ceil(extend * std::sqrt(std::max(f.cov[1][1], T(0))));
                    valid = valid && rx > 0 && ry > 0 && f.m2[0] + rx > 0 && f.m2[0] - rx < W && f.m2[1] + ry > 0 && f.m2[1] - ry < H;
                    if (valid) { rp[2 * ci] = (int)rx; rp[2 * ci + 1] = (int)ry; }
                }
        });
    });
    return {radii, means2d, depths, conics};
}

// v_means [N, 3], v_quats [N, 4], v_scales [N, 3] from the gradients of means2d, depths, conics
std::vector<torch::Tensor> project_bwd(torch::Tensor means, torch::Tensor quats, torch::Tensor scales, torch::Tensor viewmats,
                                       torch::Tensor Ks, int64_t W, int64_t H, double eps2d, torch::Tensor v_means2d,
                                       torch::Tensor v_depths, torch::Tensor v_conics) {
    const int64_t N = means.size(0), C = viewmats.size(0);
    auto v_means = torch::zeros_like(means), v_quats = torch::zeros_like(quats), v_scales = torch::zeros_like(scales);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
        using T = scalar_t;
        const T* mp = means.data_ptr<T>(); const T* qp = quats.data_ptr<T>(); const T* sp = scales.data_ptr<T>();
        const T* vp = viewmats.data_ptr<T>(); const T* kp = Ks.data_ptr<T>();
        const T* g2 = v_means2d.data_ptr<T>(); const T* gd = v_depths.data_ptr<T>(); const T* gc = v_conics.data_ptr<T>();
        T* om = v_means.data_ptr<T>(); T* oq = v_quats.data_ptr<T>(); T* os = v_scales.data_ptr<T>();
        at::parallel_for(0, N, 2048, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                for (int64_t c = 0; c < C; ++c) {
                    const int64_t ci = c * N + i;
                    const T* vm2 = g2 + 2 * ci; const T* vc = gc + 3 * ci;
                    if (vm2[0] == 0 && vm2[1] == 0 && gd[ci] == 0 && vc[0] == 0 && vc[1] == 0 && vc[2] == 0) continue;  // not rendered
                    proj::Fwd<T> f;
                    proj::forward<T>(mp + 3 * i, qp + 4 * i, sp + 3 * i, vp + 16 * c, kp + 9 * c, W, H, (T)eps2d, f);
                    proj::backward<T>(f, sp + 3 * i, vp + 16 * c, kp + 9 * c, vm2, gd[ci], vc, om + 3 * i, oq + 4 * i, os + 3 * i);
                }
        });
    });
    return {v_means, v_quats, v_scales};
}
