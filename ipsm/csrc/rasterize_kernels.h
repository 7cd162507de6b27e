// Per-tile compositing kernels, vectorised across the pixels of a tile row (8 lanes).
//
// This file is included twice by rasterize.cpp: inside `namespace generic`, and (x86-64 with GCC) inside
// `namespace avx2` under `#pragma GCC target("avx2")`. So the same source is compiled for the baseline
// instruction set (SSE2 on x86-64, NEON on aarch64, scalar code elsewhere) and for AVX2; rasterize.cpp picks
// one at run time. No include guard on purpose.
//
// The arithmetic uses GCC/Clang vector extensions (`vector_size`), not intrinsics (only the lane mask test
// `movemask` is an intrinsic): 8-lane vectors are one 256-bit register under AVX2 and a pair of 128-bit
// halves otherwise (GCC would scalarise the comparisons of a 256-bit vector on a 128-bit target). Both builds
// do the same IEEE float operations in the same order; with `-ffp-contract=off` (no fused multiply-add) they
// give bit-identical images and gradients, which the notebook tests.
//
// Layout of a tile's per-pixel state (SoA): rows of RS = NC * L floats, NC = ceil(tile width / L)
// chunks of L lanes; lanes beyond the tile's width are padding, marked done / inactive.

constexpr int L = 8;
constexpr int PREFETCH = 4;  // list entries ahead whose Gaussian data is prefetched (random accesses)
#if defined(IPSM_AVX2)
typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
static inline vi bits(vf a) { return (vi)a; }
static inline vf from_bits(vi a) { return (vf)a; }
static inline vi to_int(vf a) { return __builtin_convertvector(a, vi); }  // truncation
static inline vf to_float(vi a) { return __builtin_convertvector(a, vf); }
static inline float lane(vf v, int l) { return v[l]; }
static inline int movemask(vi m) { return _mm256_movemask_ps((__m256)m); }  // bit l set <=> lane l true
#else  // two 128-bit halves
typedef float hf __attribute__((vector_size(16)));
typedef int32_t hv __attribute__((vector_size(16)));
struct vi { hv a, b; };
struct vf { hf a, b; };
static inline vi operator&(vi x, vi y) { return {x.a & y.a, x.b & y.b}; }
static inline vi operator|(vi x, vi y) { return {x.a | y.a, x.b | y.b}; }
static inline vi operator~(vi x) { return {~x.a, ~x.b}; }
static inline vi& operator&=(vi& x, vi y) { return x = x & y; }
static inline vi operator+(vi x, vi y) { return {x.a + y.a, x.b + y.b}; }
static inline vi operator+(vi x, int y) { return {x.a + y, x.b + y}; }
static inline vi operator<<(vi x, int y) { return {x.a << y, x.b << y}; }
static inline vi operator<(vi x, vi y) { return {x.a < y.a, x.b < y.b}; }
#define IPSM_VF_OP(op)                                                                             \
    static inline vf operator op(vf x, vf y) { return {x.a op y.a, x.b op y.b}; }                  \
    static inline vf operator op(vf x, float y) { return {x.a op y, x.b op y}; }                   \
    static inline vf operator op(float x, vf y) { return {x op y.a, x op y.b}; }                   \
    static inline vf& operator op##=(vf& x, vf y) { return x = x op y; }
IPSM_VF_OP(+) IPSM_VF_OP(-) IPSM_VF_OP(*) IPSM_VF_OP(/)
#undef IPSM_VF_OP
#define IPSM_VF_CMP(op)                                                                            \
    static inline vi operator op(vf x, vf y) { return {x.a op y.a, x.b op y.b}; }                  \
    static inline vi operator op(vf x, float y) { return {x.a op y, x.b op y}; }
IPSM_VF_CMP(<) IPSM_VF_CMP(<=) IPSM_VF_CMP(>) IPSM_VF_CMP(>=)
#undef IPSM_VF_CMP
static inline vf operator-(vf x) { return {-x.a, -x.b}; }
static inline vi bits(vf x) { return {(hv)x.a, (hv)x.b}; }
static inline vf from_bits(vi x) { return {(hf)x.a, (hf)x.b}; }
static inline vi to_int(vf x) { return {__builtin_convertvector(x.a, hv), __builtin_convertvector(x.b, hv)}; }
static inline vf to_float(vi x) { return {__builtin_convertvector(x.a, hf), __builtin_convertvector(x.b, hf)}; }
static inline float lane(vf v, int l) { return l < 4 ? v.a[l] : v.b[l - 4]; }
static inline int movemask(vi m) {
#if defined(__SSE2__)
    return _mm_movemask_ps((__m128)m.a) | (_mm_movemask_ps((__m128)m.b) << 4);
#else
    int r = 0; for (int l = 0; l < 4; ++l) r |= (m.a[l] != 0) << l | (m.b[l] != 0) << (l + 4); return r;
#endif
}
#endif

static inline vf ld(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
static inline vi ldi(const int* p) { vi v; std::memcpy(&v, p, sizeof v); return v; }
static inline void st(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline void sti(int* p, vi v) { std::memcpy(p, &v, sizeof v); }
static inline vf splat(float x) { float t[L]; for (int l = 0; l < L; ++l) t[l] = x; return ld(t); }
static inline vi splati(int x) { int t[L]; for (int l = 0; l < L; ++l) t[l] = x; return ldi(t); }
static inline vf sel(vi m, vf a, vf b) { return from_bits((m & bits(a)) | (~m & bits(b))); }  // m ? a : b, lane-wise
static inline vi seli(vi m, vi a, vi b) { return (m & a) | (~m & b); }
static inline vf vmin(vf a, vf b) { return sel(a < b, a, b); }
static inline vf vmax(vf a, vf b) { return sel(a > b, a, b); }
static inline bool any(vi m) { return movemask(m) != 0; }

// Sum of the 8 lanes, always in the same tree order.
static inline float hsum(vf v) {
    const float a = (lane(v, 0) + lane(v, 4)) + (lane(v, 2) + lane(v, 6)), b = (lane(v, 1) + lane(v, 5)) + (lane(v, 3) + lane(v, 7));
    return a + b;
}

// exp(x) for x <= 88 (Cephes' expf: range reduction by ln 2, degree-5 polynomial, ~1 ulp; exp(<-87) = 1e-38).
static inline vf vexp(vf x) {
    x = vmax(vmin(x, splat(88.f)), splat(-87.f));
    const vf fx = x * 1.44269504088896341f + 0.5f;
    vi n = to_int(fx);                                               // truncation ...
    n = n + (to_float(n) > fx);                                      // ... to floor (true = -1)
    const vf nf = to_float(n);
    x = x - nf * 0.693359375f;
    x = x + nf * 2.12194440e-4f;
    const vf z = x * x;
    vf y = splat(1.9875691500e-4f);
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.f;
    return y * from_bits((n + 127) << 23);
}

// Mahalanobis half-distance of one row of lanes: 0.5 a dx^2 + b dx dy + 0.5 c dy^2 (hc = 0.5 c dy^2, bdy = b dy).
static inline vf sigma_of(float ha, float bdy, float hc, vf dx) { return (dx * dx) * ha + (dx * bdy + hc); }

struct TileGeom {
    int64_t c; int px0, py0, pw, ph, NC, RS;
    TileGeom(int64_t tile, int64_t T, int TW, int ts, int W, int H) {
        c = tile / T; const int tid = tile % T;
        px0 = (tid % TW) * ts; py0 = (tid / TW) * ts;
        pw = std::min(ts, W - px0); ph = std::min(ts, H - py0);
        NC = (pw + L - 1) / L; RS = NC * L;
    }
    // the Gaussian's pixel box clipped to the tile, in tile coordinates; false when empty
    bool clip(const int* bb, int& x0, int& x1, int& y0, int& y1) const {
        x0 = std::max(bb[0], px0) - px0; x1 = std::min(bb[1], px0 + pw) - px0;
        y0 = std::max(bb[2], py0) - py0; y1 = std::min(bb[3], py0 + ph) - py0;
        return x0 < x1 && y0 < y1;
    }
    void lane_centres(vf* xs) const {  // pixel-centre x of every lane of every chunk
        float c[L];
        for (int ch = 0; ch < NC; ++ch) {
            for (int l = 0; l < L; ++l) c[l] = px0 + ch * L + l + 0.5f;
            xs[ch] = ld(c);
        }
    }
};

// Front-to-back compositing of one tile. out/out_alpha/last/t_final are image-sized; last and t_final may be null
// (no backward needed).
template <int D>
void fwd_tile(const FwdArgs<D>& a, int64_t tile, Scratch& s) {
    const TileGeom t(tile, a.T, a.TW, a.ts, a.W, a.H);
    const int P = t.RS * t.ph;
    float* Tr = s.f(0, P); float* acc = s.f(1, P * D); int* last = s.i(0, P); int* done = s.i(1, P);
    vf xs[64 / L];
    t.lane_centres(xs);
    for (int p = 0; p < P; ++p) { Tr[p] = 1.f; last[p] = 0; done[p] = (p % t.RS) < t.pw ? 0 : -1; }
    std::fill(acc, acc + P * D, 0.f);
    int alive = t.pw * t.ph;
    const int k0 = a.off[tile], k1 = a.off[tile + 1];
    for (int k = k0; k < k1 && alive > 0; ++k) {
        if (k + PREFETCH < k1) __builtin_prefetch(&a.gp[a.fid[k + PREFETCH]]);  // list entries are random accesses
        const GPack<D>& g = a.gp[a.fid[k]];
        int x0, x1, y0, y1;
        if (!t.clip(g.bb, x0, x1, y0, y1)) continue;
        const vi kk = splati(k - k0 + 1);
        for (int y = y0; y < y1; ++y) {
            const float dy = g.my - (t.py0 + y + 0.5f);
            const float bdy = g.cb * dy, hc = 0.5f * g.cc * dy * dy;
            for (int ch = x0 / L; ch <= (x1 - 1) / L; ++ch) {
                const int p = y * t.RS + ch * L;
                const vi dn = ldi(done + p);
                const vf dx = g.mx - xs[ch];
                const vf sig = sigma_of(g.ha, bdy, hc, dx);
                vi ok = ~dn & (sig <= g.smax) & (sig >= 0.f);
                if (!any(ok)) continue;
                const vf al = vmin(splat(ALPHA_MAX), g.op * vexp(-sig));
                ok &= al >= ALPHA_THRESHOLD;
                if (!any(ok)) continue;
                const vf T = ld(Tr + p);
                const vf nT = T * (1.f - al);
                const vi term = ok & (nT <= T_EPS);
                if (any(term)) { sti(done + p, dn | term); alive -= __builtin_popcount(movemask(term)); ok &= ~term; }
                const vf vis = al * T;
                for (int j = 0; j < D; ++j) {
                    float* aj = acc + j * P + p;
                    st(aj, ld(aj) + sel(ok, vis * g.col[j], splat(0.f)));
                }
                st(Tr + p, sel(ok, nT, T));
                sti(last + p, seli(ok, kk, ldi(last + p)));
            }
        }
    }
    for (int y = 0; y < t.ph; ++y)
        for (int x = 0; x < t.pw; ++x) {
            const int p = y * t.RS + x;
            const int64_t pix = (t.c * a.H + t.py0 + y) * a.W + t.px0 + x;
            for (int j = 0; j < D; ++j) a.out[pix * D + j] = acc[j * P + p];
            a.out_alpha[pix] = 1.f - Tr[p];
            if (a.last) a.last[pix] = last[p];
            if (a.t_final) a.t_final[pix] = Tr[p];
        }
}

// Back-to-front gradient recurrence of one tile; writes one record per (tile, Gaussian) intersection.
// Per pixel, with cv = sum_j c_j vC_j (the Gaussian's colour against the pixel's output gradient):
//   dL/dalpha_i = T_i cv_i - (S_i . vC - T_final vA) / (1 - alpha_i),   S_i = sum_{k>i} c_k alpha_k T_k,
// so instead of the D-channel suffix sums S we keep one running value E = S . vC - T_final vA per pixel.
// The conic / mean2d gradients are assembled from lane moments of v_sigma: sum vs dx, vs dy, vs dx^2, vs dx dy, vs dy^2.
template <int D>
void bwd_tile(const BwdArgs<D>& a, int64_t tile, Scratch& s) {
    constexpr int R = D + 6;
    const TileGeom t(tile, a.T, a.TW, a.ts, a.W, a.H);
    const int P = t.RS * t.ph;
    float* Tr = s.f(0, P); float* E = s.f(1, P); float* vc = s.f(2, P * D); int* last = s.i(0, P);
    int rowmax[64];
    vf xs[64 / L];
    t.lane_centres(xs);
    int max_last = 0;
    for (int y = 0; y < t.ph; ++y) {
        rowmax[y] = 0;
        for (int x = 0; x < t.RS; ++x) {
            const int p = y * t.RS + x;
            if (x >= t.pw) { Tr[p] = E[p] = 0.f; last[p] = 0; for (int j = 0; j < D; ++j) vc[j * P + p] = 0.f; continue; }
            const int64_t pix = (t.c * a.H + t.py0 + y) * a.W + t.px0 + x;
            Tr[p] = a.t_final[pix];
            E[p] = -a.t_final[pix] * a.v_alpha[pix];
            last[p] = a.last[pix]; rowmax[y] = std::max(rowmax[y], last[p]);
            for (int j = 0; j < D; ++j) vc[j * P + p] = a.v_out[pix * D + j];
        }
        max_last = std::max(max_last, rowmax[y]);
    }
    const int k0 = a.off[tile];
    for (int k = a.off[tile + 1] - 1; k >= k0; --k) {
        float* out = a.rec + (int64_t)k * R;
        for (int j = 0; j < R; ++j) out[j] = 0.f;
        const int i = k - k0;
        if (i >= max_last) continue;
        if (k - PREFETCH >= k0) __builtin_prefetch(&a.gp[a.fid[k - PREFETCH]]);
        const GPack<D>& g = a.gp[a.fid[k]];
        int x0, x1, y0, y1;
        if (!t.clip(g.bb, x0, x1, y0, y1)) continue;
        const vi ii = splati(i);
        const vf zero = splat(0.f);
        vf Gc[D], Sx = zero, Sy = zero, Sxx = zero, Sxy = zero, Syy = zero, Go = zero;
        for (int j = 0; j < D; ++j) Gc[j] = zero;
        for (int y = y0; y < y1; ++y) {
            if (i >= rowmax[y]) continue;
            const float dy = g.my - (t.py0 + y + 0.5f);
            const float bdy = g.cb * dy, hc = 0.5f * g.cc * dy * dy, dy2 = dy * dy;
            for (int ch = x0 / L; ch <= (x1 - 1) / L; ++ch) {
                const int p = y * t.RS + ch * L;
                const vf dx = g.mx - xs[ch];
                const vf sig = sigma_of(g.ha, bdy, hc, dx);
                vi ok = (ii < ldi(last + p)) & (sig <= g.smax) & (sig >= 0.f);
                if (!any(ok)) continue;
                const vf vis = vexp(-sig);
                const vf araw = g.op * vis;
                const vf al = vmin(splat(ALPHA_MAX), araw);
                ok &= al >= ALPHA_THRESHOLD;
                if (!any(ok)) continue;
                const vf ra = 1.f / (1.f - al);
                const vf T = sel(ok, ld(Tr + p) * ra, ld(Tr + p));
                st(Tr + p, T);
                const vf fac = sel(ok, al * T, zero);
                vf cv = zero;
                for (int j = 0; j < D; ++j) {
                    const vf vcj = ld(vc + j * P + p);
                    cv += vcj * g.col[j];
                    Gc[j] += fac * vcj;
                }
                const vf e = ld(E + p);
                const vf v_alpha = T * cv - ra * e;
                st(E + p, e + fac * cv);
                const vi unc = ok & (araw <= ALPHA_MAX);
                const vf vs = sel(unc, -araw * v_alpha, zero);
                const vf vsx = vs * dx;
                Sx += vsx; Sxx += vsx * dx; Sxy += vsx * dy;
                Sy += vs * dy; Syy += vs * dy2;
                Go += sel(unc, vis * v_alpha, zero);
            }
        }
        for (int j = 0; j < D; ++j) out[j] = hsum(Gc[j]);
        const float sx = hsum(Sx), sy = hsum(Sy);
        out[D] = 0.5f * hsum(Sxx); out[D + 1] = hsum(Sxy); out[D + 2] = 0.5f * hsum(Syy);
        out[D + 3] = g.ca * sx + g.cb * sy; out[D + 4] = g.cb * sx + g.cc * sy; out[D + 5] = hsum(Go);
    }
}
