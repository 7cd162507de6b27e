"""Every default that enters a computation, pinned by its effect (a mutation test suite, fast).

Change any one default or formula below by hand and a test here fails. Each test checks *behaviour*
(what the default does to a result), not only the value of a field, so that a changed comparison
(`>=` to `>`), constant or sign is caught too. Values are the authors' (iCVTEAM/IPSM, FSGS) as written
up in the method notes (nbs/00_method.ipynb, sections in brackets). The notebooks pin the same
behaviour where they define it; this file covers the values that cross module boundaries.
"""

import math, os, stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# --------------------------------------------------------------------------------------------- §1 prior
@pytest.fixture(scope="module")
def prior():
    from ipsm.diffusion import tiny_prior

    return tiny_prior()


def test_vae_scaling_factor_multiplies(prior):
    "encode_images = 0.18215 * Enc(2 * bilinear512(x) - 1) (mean latent), decode_latents inverts the scale [§1.2]."
    from ipsm.diffusion import encode_images, decode_latents

    x = torch.rand(1, 30, 40, 3)
    z = encode_images(prior, x, sample_mode="mode")
    with torch.no_grad():
        raw = prior.vae.encode(F.interpolate(x.permute(0, 3, 1, 2), (512, 512), mode="bilinear", align_corners=False) * 2 - 1).latent_dist.mode()
        ref = (prior.vae.decode(raw).sample * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert prior.vae.config.scaling_factor == 0.18215
    torch.testing.assert_close(z, 0.18215 * raw, rtol=0, atol=1e-6)
    torch.testing.assert_close(decode_latents(prior, z), ref, rtol=0, atol=1e-5)
    assert z.shape == (1, 4, 64, 64)  # default working size 512


def test_encode_samples_by_default(prior):
    "The authors' `_encode_vae_image` samples the latent distribution (diffusers' retrieve_latents default) [§1.2]."
    from ipsm.diffusion import encode_images

    x = torch.rand(1, 16, 16, 3)
    a = encode_images(prior, x, torch.Generator().manual_seed(0))
    b = encode_images(prior, x, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


def test_cfg_scale_and_unconditional_prompt(prior):
    "CFG 7.5, uncond first; the unconditional prompt is '' and the suffix ', realistic, 8k' [§1.2]."
    from ipsm.diffusion import PriorConfig, predict_noise, make_prompt, encode_prompt

    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        u = prior.unet_sd(x_t, torch.tensor([500]), encoder_hidden_states=prior.embeds[:1]).sample
        c = prior.unet_sd(x_t, torch.tensor([500]), encoder_hidden_states=prior.embeds[1:]).sample
        torch.testing.assert_close(predict_noise(prior.unet_sd, x_t, 500, prior.embeds), u + 7.5 * (c - u), rtol=0, atol=1e-4)
    cfg = PriorConfig()
    assert (cfg.negative_prompt, cfg.suffix, make_prompt("a fern")) == ("", ", realistic, 8k", "a fern, realistic, 8k")
    seen = {}

    class Tok:  # records what encode_prompt tokenises
        model_max_length = 77

        def __call__(self, texts, **kw):
            seen["texts"] = texts
            return SimpleNamespace(input_ids=torch.zeros(2, 77, dtype=torch.long))

    fake = SimpleNamespace(tokenizer=Tok(), text_encoder=lambda ids: (torch.zeros(2, 77, 4),), device="cpu", label="fake")
    encode_prompt(fake, "a fern, realistic, 8k")
    assert seen["texts"] == ["", "a fern, realistic, 8k"]


def test_blip_view_choice_and_prefix():
    "torch.manual_seed(42), one randint(0, 3) per scene in sorted order; prefix 'a photography of'; greedy, 20 tokens [§1.2]."
    import inspect
    from ipsm.diffusion import blip_view_index, caption_image, blip_rank

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(42)
        ref = [int(torch.randint(low=0, high=3, size=(1,))[0]) for _ in range(8)]
    assert [blip_view_index(r) for r in range(8)] == ref
    assert blip_rank("fern") == 0 and blip_rank("trex") == 7
    p = inspect.signature(caption_image).parameters
    assert (p["prefix"].default, p["max_length"].default) == ("a photography of", 20)


def test_prior_schedule_and_size():
    "SD's DDPM schedule (1000 steps, scaled_linear 0.00085-0.012) and a 512 px working size [§1.2]."
    from ipsm.diffusion import sd_scheduler, Prior

    c = sd_scheduler().config
    assert (c.num_train_timesteps, c.beta_schedule, c.beta_start, c.beta_end) == (1000, "scaled_linear", 0.00085, 0.012)
    assert Prior.__dataclass_fields__["size"].default == 512


def test_inpaint_mask_threshold(prior):
    "16_score: bilinear mask to 512, repaint where >= 0.5, masked image = warp * (mask < 0.5) (grey = 0) [§1.2]."
    from ipsm.score import inpaint_conditioning

    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[:, 4:] = True
    mask[2, 1] = True
    warped = torch.rand(6, 8, 3)
    out = inpaint_conditioning(prior, warped, mask, torch.Generator().manual_seed(0))
    soft = F.interpolate(mask.float()[None, None], (512, 512), mode="bilinear", align_corners=False)
    assert not (soft == 0.5).any()  # the authors' '> 0.5' and diffusers' '>= 0.5' agree here
    assert torch.equal(out["mask_full"], (soft > 0.5).float())
    assert ((soft > 0.3) & (soft < 0.5)).any() and ((soft > 0.5) & (soft < 0.7)).any()  # a different threshold would differ
    img = F.interpolate(warped.permute(2, 0, 1)[None], (512, 512), mode="bilinear", align_corners=False) * 2 - 1
    torch.testing.assert_close(out["masked_image"], img * (soft < 0.5), rtol=0, atol=1e-6)
    assert torch.equal(out["mask"], F.interpolate(out["mask_full"], (64, 64)))  # nearest to latent size


# --------------------------------------------------------------------------------------------- §2 pseudo views
def test_pseudo_sigma_schedule():
    "sigma_idx = max(0.2 N, idx + 1) / N * 0.05: 0.01 for the first 2000 of 10 000 poses, then linear to 0.05 [§2.1]."
    from ipsm.pseudo_views import annealed_sigmas, PseudoViewConfig

    s = annealed_sigmas()
    assert len(s) == 10_000 and s[0] == s[1999] == pytest.approx(0.01) and s[-1] == pytest.approx(0.05)
    assert s[2000] == pytest.approx(2001 / 10_000 * 0.05)
    c = PseudoViewConfig()
    assert (c.n_poses, c.sigma_max, c.warm_frac, c.order) == (10_000, 0.05, 0.2, "random")


def _cams():
    from ipsm.cameras import look_at

    eyes = torch.tensor([[-0.4, 0.0, 0.0], [0.0, 0.1, 0.1], [0.4, -0.05, 0.0]], dtype=torch.float64)
    return look_at(eyes, torch.tensor([[0.0, 0.0, 4.0]] * 3, dtype=torch.float64))


def _check_axes(vm, centres_exp, looks_exp):
    "Pseudo cameras sit at the expected centres and their optical axes (+z, OpenCV) pass through the look-at points."
    from ipsm.cameras import rigid_inverse

    c2w = rigid_inverse(torch.as_tensor(vm)).numpy()
    np.testing.assert_allclose(c2w[:, :3, 3], centres_exp, atol=1e-9)
    v = looks_exp - c2w[:, :3, 3]
    z = c2w[:, :3, 2]
    off = v - (v * z).sum(-1, keepdims=True) * z
    assert np.abs(off).max() < 1e-7 and ((v * z).sum(-1) > 0).all()


def test_pseudo_poses_llff_lookat_jitter():
    "LLFF: position = train centre + N(0, s^2), clipped to [-1, 1]; look-at = avg pose @ [0,0,-focal] + N(0, s^2) [§2.1]."
    from ipsm.cameras import opencv_to_opengl
    from ipsm.pseudo_views import generate_pseudo_poses_llff, recenter_poses, poses_avg

    c2w, bounds, n = _cams(), np.array([[2.0, 9.0], [2.5, 8.0], [2.2, 10.0]]), 40
    vm, src, sig = generate_pseudo_poses_llff(c2w, bounds, n_poses=n, rng=0)
    rng = np.random.default_rng(0)
    poses = np.asarray(opencv_to_opengl(c2w))
    scale = 1 / (bounds.min() * 0.75)
    poses[:, :3, 3] *= scale
    b = bounds * scale
    poses, T = recenter_poses(poses)
    focal = 1 / ((1 - 0.75) / (b.min() * 0.9) + 0.75 / (b.max() * 5.0))
    s = np.maximum(0.2 * n, np.arange(n) + 1) / n * 0.05
    src_e = rng.integers(0, 3, n)
    pos = np.clip(poses[src_e, :3, 3] + rng.normal(size=(n, 3)) * s[:, None], -1, 1)
    look = poses_avg(poses) @ np.array([0, 0, -focal, 1.0]) + rng.normal(size=(n, 3)) * s[:, None]
    Ti = np.linalg.inv(T)
    to_world = lambda x: (x @ Ti[:3, :3].T + Ti[:3, 3]) / scale
    assert (src == src_e).all()
    np.testing.assert_allclose(sig, s)
    _check_axes(vm, to_world(pos), to_world(look))


def test_pseudo_poses_dtu_lookat_jitter():
    "DTU: PCA-normalised centres + N(0, s^2); look-at = focus point + N(0, s^2) [§2.1]."
    from ipsm.cameras import opencv_to_opengl
    from ipsm.pseudo_views import generate_pseudo_poses_dtu, transform_poses_pca, focus_point_fn

    c2w, n = _cams(), 40
    vm, src, sig = generate_pseudo_poses_dtu(c2w, n_poses=n, rng=1)
    rng = np.random.default_rng(1)
    poses, T = transform_poses_pca(np.asarray(opencv_to_opengl(c2w)))
    s = np.maximum(0.2 * n, np.arange(n) + 1) / n * 0.05
    src_e = rng.integers(0, 3, n)
    pos = np.clip(poses[src_e, :3, 3] + rng.normal(size=(n, 3)) * s[:, None], -1, 1)
    look = focus_point_fn(poses) + rng.normal(size=(n, 3)) * s[:, None]
    Ti = np.linalg.inv(T)
    to_world = lambda x: x @ Ti[:3, :3].T + Ti[:3, 3]
    assert (src == src_e).all()
    np.testing.assert_allclose(sig, s)
    _check_axes(vm, to_world(pos), to_world(look))


def test_warp_thresholds():
    "Depth-consistency taus: 0.3 for the IPSM inline prior, 0.1 for L_geo; the authors' pixel convention [§2.3]."
    from ipsm.warp import WarpConfig, depth_consistency_masks

    c = WarpConfig()
    assert (c.tau_ipsm, c.tau_geo, c.pixel_convention, c.drop_invalid) == (0.3, 0.1, "authors", True)
    w, t = torch.tensor([[1.0, 2.0, 3.0, 11.0]]), torch.tensor([[0.0, 0.5, 4.0, 10.0]])  # normalised diffs 0, .05, .2, 0
    m3, m1 = depth_consistency_masks(w, t)
    assert m3.tolist() == [[True, True, True, True]] and m1.tolist() == [[True, True, False, True]]


# --------------------------------------------------------------------------------------------- §3 depth
class _Spy(torch.nn.Module):
    "Stands in for DPT: records its input and 'predicts' the channel mean."

    def __init__(self):
        super().__init__()
        self.config, self.backbone, self.w = None, True, torch.nn.Parameter(torch.ones(1))

    def forward(self, pixel_values):
        self.seen = pixel_values
        return SimpleNamespace(predicted_depth=pixel_values.mean(1) * self.w)


def test_depth_network_input():
    "MiDaS input: (img - 0.5) / 0.5, bicubic to 384 x 512 (H x W), output bicubic back to the image size [§3]."
    from ipsm.regularizers import MonoDepth, tiny_depth_model, load_depth_model
    import inspect

    spy, img = _Spy(), torch.rand(30, 40, 3)
    out = MonoDepth(spy)(img)
    x = F.interpolate(((img - 0.5) / 0.5).permute(2, 0, 1)[None], (384, 512), mode="bicubic", align_corners=False)
    torch.testing.assert_close(spy.seen, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, F.interpolate(x.mean(1, keepdim=True), (30, 40), mode="bicubic", align_corners=False)[0, 0], rtol=0, atol=1e-6)
    for f in (tiny_depth_model, load_depth_model):
        assert inspect.signature(f).parameters["input_size"].default == (384, 512)


def test_seen_depth_loss_sign_and_form():
    "L_seen = min(1 - rho(-D_mono, D_r), 1 - rho(1 / (D_mono + 200), D_r)) [§3]."
    from ipsm.regularizers import depth_loss_seen, pearson_corr

    m = torch.linspace(0, 5000, 60).reshape(6, 10)
    assert float(depth_loss_seen(-2 * m + 3, m)) == pytest.approx(0, abs=1e-5)  # first branch (minus sign)
    assert float(depth_loss_seen(1 / (m + 200), m)) == pytest.approx(0, abs=1e-5)  # second branch (+200)
    D = torch.rand(6, 10, generator=torch.Generator().manual_seed(0)) + torch.arange(60.0).reshape(6, 10) / 30
    mono = 1 / D + 0.3 * torch.rand(6, 10, generator=torch.Generator().manual_seed(1))
    ref = min(1 - float(pearson_corr(-mono, D)), 1 - float(pearson_corr(1 / (mono + 200), D)))
    assert float(depth_loss_seen(D, mono)) == pytest.approx(ref, abs=1e-6)
    a = torch.randn(200, generator=torch.Generator().manual_seed(2))
    b = a + 0.5 * torch.randn(200, generator=torch.Generator().manual_seed(3))
    assert float(pearson_corr(a, b)) == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-5)


def test_pseudo_depth_loss():
    "L_pseudo = 1 - rho(D_r, -mono) [§3]."
    from ipsm.regularizers import depth_loss_pseudo

    m = torch.linspace(0, 5, 60).reshape(6, 10) ** 2
    assert float(depth_loss_pseudo(-3 * m + 1, m)) == pytest.approx(0, abs=1e-5)
    assert float(depth_loss_pseudo(m, m)) == pytest.approx(2, abs=1e-5)


# --------------------------------------------------------------------------------------------- §4 geometry
def test_geo_loss_mean_over_all_pixels():
    "L_geo averages the masked L1 over all 3HW values (l1_loss_mask without a mask) [§4]."
    from ipsm.regularizers import geo_loss

    pred, tgt = torch.ones(4, 5, 3), torch.zeros(4, 5, 3)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[0, :2] = True
    assert float(geo_loss(pred, tgt, mask)) == pytest.approx(6 / 60)


def test_dtu_background_prior():
    "bg = dark (max RGB < 30/255) with the rows above (up to 49, fewer at the top edge), or mean RGB > 0.99 [§4, §5.4]."
    from ipsm.regularizers import dtu_background_mask

    im = torch.full((80, 6, 3), 0.5)
    im[:5, 0] = 29 / 255
    im[:5, 1] = 31 / 255  # just dark / just not, from the top
    im[10:60, 2] = 0.0
    im[10:58, 3] = 0.0  # runs of 50 and 48 away from the top
    im[:, 4] = 0.991
    im[:, 5] = 0.989
    bg = dtu_background_mask(im)
    assert bg[:5, 0].all() and not bg[:, 1].any()
    assert bg[:, 2].tolist() == [False] * 59 + [True] + [False] * 20 and not bg[:, 3].any()
    assert bg[:, 4].all() and not bg[:, 5].any()


# --------------------------------------------------------------------------------------------- §5 backbone
def _toy(means, scales, opac=0.5):
    from ipsm.gaussians import make_optimizers

    n = len(means)
    sp = torch.nn.ParameterDict(
        dict(
            means=torch.nn.Parameter(torch.as_tensor(means, dtype=torch.float32)),
            scales=torch.nn.Parameter(torch.as_tensor(scales, dtype=torch.float32).log()[:, None].repeat(1, 3)),
            quats=torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
            opacities=torch.nn.Parameter(torch.logit(torch.as_tensor(opac, dtype=torch.float32).expand(n).clone())),
            sh0=torch.nn.Parameter(torch.zeros(n, 1, 3)),
            shN=torch.nn.Parameter(torch.zeros(n, 15, 3)),
        )
    )
    return sp, make_optimizers(sp)


def _grow(strategy, means, scales, grad_ndc, extent=1.0, step=600):
    sp, op = _toy(means, scales)
    st = strategy.initialize_state(extent)
    st["grad2d"], st["count"] = torch.as_tensor(grad_ndc, dtype=torch.float32), torch.ones(len(means))
    torch.manual_seed(0)
    return strategy._grow(sp, op, st, step), sp


def test_densify_gradient_threshold_and_percent_dense():
    "clone if mean grad >= 0.0005 and max scale <= 0.01 x extent; split (2 children, scale / 1.6) if larger [§5.2]."
    from ipsm.gaussians import FSGSStrategy

    means = [[0.0, 0, 0], [0.3, 0, 0], [0.0, 0.3, 0], [0.3, 0.3, 0]]
    # extent 2: 0.01999 <= 0.01 * 2 clones, 0.02001 splits; a gradient of exactly 0.0005 counts (>=), 0.000499 does not
    out, sp = _grow(FSGSStrategy(), means, [0.01999, 0.02001, 0.01999, 0.02001], [0.0005, 0.0005, 0.000499, 0.000499], extent=2.0)
    assert (out["clone"], out["split"], out["split_far"], out["unpool"]) == (1, 1, 0, 0)
    assert len(sp["means"]) == 4 + 1 + 2 - 1
    torch.testing.assert_close(sp["scales"][-2:].exp(), torch.full((2, 3), 0.02001 / 1.6))  # N = 2 children, scale / 1.6
    torch.testing.assert_close(sp["means"][3], torch.tensor([0.0, 0, 0]))  # the clone sits on its parent


def test_split_and_unpool_distance_triggers():
    "FSGS: split if mean 3-NN sq. distance > 10 x extent, unpool (3 midpoints) if > 5 x extent, both need scale > extent, unpool only < 2000 [§5.2]."
    from ipsm.gaussians import FSGSStrategy

    tight = [[0.0, 0, 0], [0, 0.1, 0], [0, 0, 0.1]]  # the far point's mean 3-NN sq. distance is d^2 + 0.0067
    for d2, want in ((9.9, 0), (10.1, 1)):  # split trigger (unpool off at step 2500)
        out, _ = _grow(FSGSStrategy(), tight + [[math.sqrt(d2), 0, 0]], [0.001] * 3 + [1.01], [0.0] * 4, step=2500)
        assert (out["split_far"], out["unpool"]) == (want, 0), (d2, out)
    out, sp = _grow(FSGSStrategy(), tight + [[math.sqrt(4.995), 0, 0]], [0.001] * 3 + [1.01], [0.0] * 4, step=1900)
    assert (out["split_far"], out["unpool"]) == (0, 3)  # 5 < 5.0017: three midpoints
    torch.testing.assert_close(sp["means"][-3:, 0].detach(), torch.full((3,), math.sqrt(4.995) / 2))
    out, _ = _grow(FSGSStrategy(), tight + [[math.sqrt(4.9), 0, 0]], [0.001] * 3 + [1.01], [0.0] * 4, step=1900)
    assert out["unpool"] == 0  # d^2 < 5
    out, _ = _grow(FSGSStrategy(), tight + [[math.sqrt(9.9), 0, 0]], [0.001] * 3 + [0.99], [0.0] * 4, step=1900)
    assert out["unpool"] == 0  # scale < extent
    out, _ = _grow(FSGSStrategy(), tight + [[math.sqrt(9.9), 0, 0]], [0.001] * 3 + [1.01], [0.0] * 4, step=2000)
    assert out["unpool"] == 0  # not from step 2000


def test_unpool_pairing_default():
    "Unpooling pairs sources and neighbours as FSGS/IPSM's code does: sources tiled, neighbours interleaved [§5.2]."
    from ipsm.gaussians import FSGSStrategy, knn_sq_dist

    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [10, 0, 0], [11, 0, 0], [11, 0.1, 0], [11, 0, 0.1]])
    sp, op = _toy(pos, [1.0, 0.01, 0.01, 0.01, 1.0, 0.01, 0.01, 0.01])
    st = {"grad2d": torch.zeros(8), "count": torch.zeros(8), "scene_scale": 0.1}
    assert FSGSStrategy()._unpool(sp, op, st) == 6
    sel = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
    nn = knn_sq_dist(pos)[1]
    source, target = pos[sel].repeat(1, 3, 1).reshape(-1, 3), pos[nn[sel].reshape(-1)]
    torch.testing.assert_close(sp["means"][8:].detach(), (source + target) / 2)


def test_prune_threshold_and_schedule():
    "Prune opacity < 0.005 at densification steps after 500; densify every 100 in (500, 10000); reset at 2001 to <= 0.01 [§5.2]."
    from ipsm.gaussians import FSGSStrategy

    s = FSGSStrategy()
    sp, op = _toy([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], [0.1] * 3, opac=torch.tensor([0.00499, 0.00501, 0.5]))
    assert s._prune(sp, op, {}, 500) == 0 and s._prune(sp, op, {}, 501) == 1 and len(sp["means"]) == 2
    assert [k for k in range(1, 10_001) if s.is_refine_step(k)] == list(range(600, 10_000, 100))
    assert [k for k in range(1, 12_002) if s.is_reset_step(k)] == [2001, 12_001] and s.reset_value == 0.01


def test_gaussian_init_and_learning_rates():
    "Init: opacity 0.1, scale sqrt(mean 3-NN sq. distance), SH degree 3; Adam lrs of 3DGS, eps 1e-15 [§5.2]."
    from ipsm.gaussians import init_from_points, make_optimizers, means_lr

    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1]])
    sp = init_from_points(pts, torch.full((5, 3), 0.5))
    d2 = torch.cdist(pts, pts).fill_diagonal_(1e9).topk(3, largest=False).values.pow(2).mean(1)
    torch.testing.assert_close(sp["scales"][:, 0], 0.5 * d2.log())
    torch.testing.assert_close(torch.sigmoid(sp["opacities"]), torch.full((5,), 0.1))
    assert sp["shN"].shape == (5, 15, 3)
    lr = {k: o.param_groups[0]["lr"] for k, o in make_optimizers(sp, scene_extent=2.0).items()}
    assert lr == pytest.approx(dict(means=3.2e-4, scales=5e-3, quats=1e-3, opacities=0.05, sh0=2.5e-3, shN=2.5e-3 / 20))
    assert make_optimizers(sp)["means"].defaults["eps"] == 1e-15
    assert means_lr(10_000, 2.0) == pytest.approx(3.2e-6) and means_lr(5000) == pytest.approx(1.6e-5)


def test_ply_mode(tmp_path):
    "The exported PLY is world-readable (0644), not mkstemp's 0600."
    from ipsm.gaussians import init_random, save_ply

    f = save_ply(init_random(10), tmp_path / "pc.ply")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644


# --------------------------------------------------------------------------------------------- §6 metrics
def test_ssim_window():
    "3DGS SSIM: 11 x 11 Gaussian window, sigma 1.5, zero padding, C1 = 0.01^2, C2 = 0.03^2 [§5.1, §6]."
    from scipy.signal import correlate2d
    from ipsm.metrics import ssim

    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 28, 3, generator=g)
    y = (x + 0.2 * torch.randn(24, 28, 3, generator=g)).clamp(0, 1)
    t = np.arange(11) - 5
    w = np.exp(-(t**2) / (2 * 1.5**2))
    w = np.outer(w, w) / w.sum() ** 2
    f = lambda a: correlate2d(a, w, mode="same", boundary="fill")
    vals = []
    for c in range(3):
        a, b = x[..., c].double().numpy(), y[..., c].double().numpy()
        ma, mb = f(a), f(b)
        sa, sb, sab = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        vals.append(((2 * ma * mb + 1e-4) * (2 * sab + 9e-4)) / ((ma**2 + mb**2 + 1e-4) * (sa + sb + 9e-4)))
    assert float(ssim(x, y)) == pytest.approx(float(np.mean(vals)), abs=1e-6)
    assert float(ssim(x, y)) == pytest.approx(float(ssim(x, y, separable=False)), abs=1e-6)


def test_lpips_vgg_on_unit_range():
    "LPIPS: VGG backbone, images in [0, 1] passed straight in (the 'inria' protocol of 3DGS/FSGS/IPSM) [§6]."
    from ipsm.metrics import lpips
    from ipsm.settings import load_settings

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 64, 3, generator=g), torch.rand(64, 64, 3, generator=g)
    d = float(lpips(x, y))
    assert d == pytest.approx(float(lpips(x, y, net="vgg", protocol="inria")), abs=1e-7)
    assert d == pytest.approx(float(lpips((x + 1) / 2, (y + 1) / 2, net="vgg", protocol="standard")), abs=1e-5)  # no 2x-1
    assert abs(d - float(lpips(x, y, net="alex"))) > 1e-3
    assert load_settings().lpips_net == "vgg"


def test_dtu_soft_compositing_and_masked_psnr():
    "DTU: composite x*m + (1-m) with the soft mask; PSNR over mask == 1 only [§6]."
    from ipsm.metrics import dtu_masked_metrics, psnr, ssim

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 32, 3, generator=g), torch.rand(32, 32, 3, generator=g)
    m = torch.zeros(32, 32)
    m[8:24, 8:24] = 1.0
    m[7, 8:24] = 0.6
    m[24, 8:24] = 0.3
    r = dtu_masked_metrics(x, y, m)
    m3 = m[..., None]
    assert float(r["ssim"]) == pytest.approx(float(ssim(x * m3 + 1 - m3, y * m3 + 1 - m3)), abs=1e-6)
    assert float(r["psnr"]) == pytest.approx(float(psnr(x, y, mask=m == 1)), abs=1e-4)
    assert abs(float(r["ssim"] - dtu_masked_metrics(x, y, m, dtu_mask="binary")["ssim"])) > 1e-3


def test_evaluate_quantizes_like_png():
    "Predictions are rounded to 8 bits (floor(255 x + 0.5)) before the metrics, as the papers read saved PNGs [§6]."
    from ipsm.metrics import evaluate, psnr

    gt = torch.full((16, 16, 3), 128 / 255)
    assert evaluate([gt + 0.3 / 255], [gt])["psnr"] == float("inf")  # rounds back onto the GT
    assert evaluate([gt + 0.6 / 255], [gt])["psnr"] == pytest.approx(20 * math.log10(255), abs=1e-3)  # one level up
    assert evaluate([gt + 0.3 / 255], [gt], quantize=False)["psnr"] == pytest.approx(float(psnr(gt + 0.3 / 255, gt)))
