"""Every field of the `llff-3view` and `dtu-3view` presets against the authors' values, and the places where a value enters a computation.

The tables cite the authors' code (iCVTEAM/IPSM at f12204a: configs/LLFF.yaml, configs/dtu.yaml,
arguments/__init__.py, train.py, train_dtu_mask.py, scene/, utils/) or say `ipsm:` for fields that have
no counterpart there (output files, device, our own options). Fields of other modules' configs that the
authors' code has no number for (ipsm.init) are checked against those modules' own defaults: the preset
must not change them. Mutation-tester rule: changing any one preset value must fail a test here.
"""

import pytest
import torch

from ipsm.config import preset_config, config_to_dict, flat_dict, resolve_config, InitConfig, ScoreConfig
from ipsm.losses import schedule_at, weights_at

R = "iCVTEAM/IPSM "
LLFF = {  # flattened field: (value, where it comes from)
    "data.factor": (8, R + "configs/LLFF.yaml resolution: 8 (images_8)"),
    "data.n_views": (3, R + "configs/LLFF.yaml n_views: 3"),
    "data.test_every": (8, R + "scene/dataset_readers.py llffhold=8"),
    "data.max_test_views": (0, "ipsm: 0 = every test view, as the authors"),
    "use_scene_points": (True, "ipsm: a scene's shipped points3d.npy plays the authors' precomputed 3_views/dense/fused.ply"),
    "model.sh_degree": (3, R + "arguments ModelParams.sh_degree = 3"),
    "model.init_opacity": (0.1, R + "scene/gaussian_model.py create_from_pcd inverse_sigmoid(0.1)"),
    "model.init_scale": (1.0, R + "create_from_pcd: scale = sqrt(mean 3-NN squared distance)"),
    "model.knn": (3, R + "simple-knn distCUDA2: 3 neighbours"),
    "model.n_random": (1000, R + "dataset_readers.py random fallback: 1,000 points"),
    "model.random_colors": ("3dgs", R + "dataset_readers.py SH2RGB(random / 255)"),
    "optim.means_lr": (1.6e-4, R + "arguments position_lr_init"),
    "optim.means_lr_final": (1.6e-6, R + "arguments position_lr_final"),
    "optim.scales_lr": (5e-3, R + "arguments scaling_lr"),
    "optim.quats_lr": (1e-3, R + "arguments rotation_lr"),
    "optim.opacities_lr": (0.05, R + "arguments opacity_lr"),
    "optim.sh0_lr": (2.5e-3, R + "arguments feature_lr"),
    "optim.shN_lr": (2.5e-3 / 20, R + "gaussian_model.py training_setup feature_lr / 20"),
    "optim.eps": (1e-15, R + "gaussian_model.py Adam eps=1e-15"),
    "strategy.grow_grad2d": (0.0005, R + "configs/LLFF.yaml densify_grad_threshold"),
    "strategy.grow_scale3d": (0.01, R + "arguments percent_dense"),
    "strategy.split_dist": (10.0, R + "arguments dist_thres"),
    "strategy.unpool_dist": (5.0, R + "gaussian_model.py proximity unpooling: 5 x extent"),
    "strategy.unpool_stop_iter": (2000, R + "gaussian_model.py: unpool while iteration < 2000"),
    "strategy.unpool_pairing": ("authors", R + "gaussian_model.py proximity unpooling: sources tiled against interleaved neighbours"),
    "strategy.prune_opa": (0.005, R + "arguments prune_threshold"),
    "strategy.prune_from_iter": (500, R + "arguments prune_from_iter"),
    "strategy.refine_start_iter": (500, R + "arguments densify_from_iter"),
    "strategy.refine_stop_iter": (10_000, R + "arguments densify_until_iter"),
    "strategy.refine_every": (100, R + "arguments densification_interval"),
    "strategy.reset_start": (2001, R + "train.py:256 (iteration - start_sample_pseudo - 1) % interval == 0"),
    "strategy.reset_every": (10_000, R + "configs/LLFF.yaml opacity_reset_interval"),
    "strategy.reset_value": (0.01, R + "configs/LLFF.yaml reset_param"),
    "strategy.verbose": (False, "ipsm: logging only"),
    "pseudo.start": (2000, R + "configs/LLFF.yaml start_sample_pseudo"),
    "pseudo.end": (9500, R + "arguments end_sample_pseudo"),
    "pseudo.pool.n_poses": (10_000, R + "scene/__init__.py n_frames=10000"),
    "pseudo.pool.seed": (0, "ipsm: offset added to --seed (the run seed generates the pool)"),
    "pseudo.pool.order": ("random", R + "train.py:130 pop(randint(0, len - 1))"),
    "pseudo.pool.sigma_max": (0.05, R + "utils/pose_utils.py annealing noise, max 0.05"),
    "pseudo.pool.warm_frac": (0.2, R + "utils/pose_utils.py max(0.2 N, idx + 1) / N"),
    "pseudo.warp.tau_ipsm": (0.3, R + "warp.py mask_depth (paper A.3 tau = 0.3)"),
    "pseudo.warp.tau_geo": (0.1, R + "warp.py mask_depth_strict (tau = 0.1)"),
    "pseudo.warp.pixel_convention": ("authors", R + "warp.py 2x/W - 1, align_corners=False"),
    "pseudo.warp.drop_invalid": (True, "ipsm: ipsm.warp default (invalid depths / points behind the source are not sampled)"),
    "score.guidance_scale": (7.5, R + "configs/LLFF.yaml warp_sds_guidance_scale"),
    "score.t_range": ([0.25, 0.75], R + "sd_guidance.py randint(int(1000 * 0.25), int(1000 * 0.75))"),
    "score.weighting": ("alphas_cumprod", R + "sd_guidance.py:736 w = alphas[t] (alphas_cumprod)"),
    "score.r2_sign": ("code", R + "sd_guidance.py:737 eps_phi - eps_sd"),
    "score.lambda_ipsm_r1": (ScoreConfig().lambda_ipsm_r1, "ipsm.score default; the trainer reads loss.lambda_ipsm_r1"),
    "score.lambda_ipsm_r2": (ScoreConfig().lambda_ipsm_r2, "ipsm.score default; the trainer reads loss.lambda_ipsm_r2"),
    "score.lambda_sds": (ScoreConfig().lambda_sds, "ipsm.score default; the trainer reads loss.lambda_sds"),
    "score.warmup_steps": (500, R + "train.py:139 min((iteration - start_sample_pseudo) / 500, 1)"),
    "score.sample_mode": ("sample", R + "sd_guidance.py _encode_vae_image (diffusers retrieve_latents 'sample')"),
    "score.size": (None, "ipsm: None = the prior's own working size: 512 for SD, as " + R + "train.py:149-153 interpolate to 512 x 512"),
    "depth_reg.late_step": (9501, R + "train.py:122-124 weight lowered after its use at iteration end_sample_pseudo + 1"),
    "depth_reg.late_weight": (0.001, R + "train.py:124 min(0.001, depth_weight)"),
    "depth_reg.input_size": ([384, 512], R + "utils/depth_utils.py resize to 384 x 512"),
    "geo_reg.reduction": ("all", R + "train.py:144 l1_loss_mask without a mask: mean over every pixel"),
    "loss.lambda_l1": (0.8, R + "train.py:112 (1 - lambda_dssim), LLFF lambda_dssim 0.2"),
    "loss.lambda_dssim": (0.2, R + "configs/LLFF.yaml lambda_dssim"),
    "loss.lambda_depth_seen": (0.05, R + "configs/LLFF.yaml depth_weight"),
    "loss.lambda_geo": (2.0, R + "configs/LLFF.yaml pixel_pseudo_weight"),
    "loss.lambda_depth_pseudo": (0.5, R + "configs/LLFF.yaml depth_pseudo_weight"),
    "loss.lambda_ipsm_r1": (0.2, R + "configs/LLFF.yaml warp_sds_pseudo_weight"),
    "loss.lambda_ipsm_r2": (2.0, R + "configs/LLFF.yaml warp_sds_pseudo_weight_2"),
    "loss.lambda_sds": (2.0, R + "arguments sds_pseudo_weight (configs/sds.yaml 2.0)"),
    "schedule.max_steps": (10_000, R + "configs/LLFF.yaml iterations"),
    "schedule.steps_scaler": (1.0, "ipsm: the full schedule"),
    "schedule.sh_degree_interval": (500, R + "configs/LLFF.yaml sh_interval"),
    "schedule.eval_steps": ([10_000], "ipsm: the authors also log every 500 steps; the reported number is the one at 10000"),
    "schedule.save_steps": ([2000, 5000, 10_000], R + "train.py save_iterations / checkpoint_iterations"),
    "schedule.log_every": (10, R + "train.py:225 progress bar every 10 iterations"),
    "background.color": ([0.0, 0.0, 0.0], R + "white_background False: black"),
    "background.dtu_bg_prior": (False, R + "train.py (LLFF) has no background prior"),
    "ipsm": (True, R + "configs/LLFF.yaml use_wsds + use_wsds_2"),
    "depth": (True, R + "configs/LLFF.yaml depth_weight > 0"),
    "geo": (True, R + "configs/LLFF.yaml use_pixel: True"),
    "sds": (False, R + "configs/LLFF.yaml use_sds: False"),
    "view_order": ("stack", R + "train.py:105-107 viewpoint_stack.pop(randint(0, len - 1)), refilled when empty"),
    "prompt": ("", R + "train.py:57-63 the scene's blip_rst.txt"),
    "prior": ("sd", R + "README: stable-diffusion-inpainting + stable-diffusion-v1-5"),
    "depth_model": ("real", R + "utils/depth_utils.py MiDaS DPT_Hybrid"),
    "lpips_net": (None, "ipsm: settings.ini lpips_net (vgg, as the authors' metrics.py)"),
    "seed": (1, R + "utils/general_utils.py safe_state seed = 1"),
    "device": ("auto", "ipsm"),
    "preset": ("llff-3view", "ipsm: names the run folder"),
    "result_dir": (None, "ipsm: results/<scene>/<preset>"),
    "overwrite": (False, "ipsm: never replace a run unasked"),
    "max_nan_steps": (20, "ipsm"),
    "save_ply": (True, R + "train.py scene.save at the end"),
    "save_video": (True, "ipsm: a trajectory video at the end"),
    "resume": (None, "ipsm"),
}
LLFF |= {
    f"init.{k}": (v, "ipsm.init default (no number in the authors' code: COLMAP with its own defaults)")
    for k, v in flat_dict(config_to_dict(InitConfig())).items()
}

DTU = LLFF | {  # what train_dtu_mask.py + configs/dtu.yaml change
    "data.factor": (4, R + "configs/dtu.yaml resolution: 4 (images_4, 400x300)"),
    "strategy.reset_every": (1000, R + "configs/dtu.yaml opacity_reset_interval"),
    "strategy.reset_value": (0.05, R + "configs/dtu.yaml reset_param"),
    "loss.lambda_l1": (0.4, R + "configs/dtu.yaml lambda_dssim 0.6 -> 1 - 0.6"),
    "loss.lambda_dssim": (0.6, R + "configs/dtu.yaml lambda_dssim"),
    "loss.lambda_depth_seen": (0.005, R + "configs/dtu.yaml depth_weight"),
    "loss.lambda_geo": (0.2, R + "configs/dtu.yaml pixel_pseudo_weight"),
    "loss.lambda_depth_pseudo": (0.05, R + "configs/dtu.yaml depth_pseudo_weight"),
    "background.dtu_bg_prior": (True, R + "train_dtu_mask.py:114-122 black/white background prior"),
    "preset": ("dtu-3view", "ipsm: names the run folder"),
}


@pytest.mark.parametrize("name,table,scene", [("llff-3view", LLFF, "llff/fern"), ("dtu-3view", DTU, "dtu/scan24")])
def test_preset_matches_the_authors(name, table, scene):
    got = flat_dict(config_to_dict(preset_config(name)))
    assert got.pop("data.data_dir").endswith(scene)
    assert set(got) == set(table), f"fields without a row: {sorted(set(got) - set(table))}; rows without a field: {sorted(set(table) - set(got))}"
    wrong = {k: (got[k], v) for k, (v, _) in table.items() if got[k] != v or type(got[k]) is not type(v)}
    assert not wrong, "preset value != authors' value (field: (preset, table)): " + repr(wrong)


def test_dtu_preset_differs_only_where_the_authors_do():
    a, b = (flat_dict(config_to_dict(preset_config(n))) for n in ("llff-3view", "dtu-3view"))
    assert {k for k in a if a[k] != b[k]} == {k for k in DTU if DTU[k] != LLFF[k]} | {"data.data_dir"}


# ---- where a value enters a computation -------------------------------------------------------------


def test_schedule_of_the_llff_preset():
    c = preset_config("llff-3view")
    steps = range(1, 10_001)
    assert [s for s in steps if schedule_at(c, s)["reset_opacity"]] == [2001]
    assert [s for s in steps if schedule_at(c, s)["pseudo"]] == list(range(2001, 9500))
    assert [s for s in steps if schedule_at(c, s)["densify"]][:2] == [600, 700] and max(s for s in steps if schedule_at(c, s)["densify"]) == 9900
    assert [schedule_at(c, s)["sh_degree"] for s in (499, 500, 1000, 1500, 9999)] == [0, 1, 2, 3, 3]


def test_dtu_opacity_resets():
    c = preset_config("dtu-3view")
    assert [s for s in range(1, 10_001) if schedule_at(c, s)["reset_opacity"]] == list(range(2001, 10_000, 1000))


def test_weights_over_the_schedule():
    c = preset_config("llff-3view")
    w = {s: weights_at(c, s) for s in (2000, 2001, 2250, 2500, 9499, 9500, 9501, 9502)}
    assert w[2000]["geo"] == w[2000]["ipsm_r2"] == w[2000]["depth_pseudo"] == 0  # outside the window
    assert w[2001]["geo"] == 2.0 and w[2250]["geo"] == 2.0  # L_geo: no ramp
    assert w[2250]["ipsm_r1"] == pytest.approx(0.1) and w[2250]["ipsm_r2"] == pytest.approx(1.0)  # ramp 0.5 on IPSM
    assert w[2250]["depth_pseudo"] == pytest.approx(0.25)  # ... and on the pseudo depth
    assert w[2500]["ipsm_r2"] == 2.0 and w[9499]["ipsm_r2"] == 2.0 and w[9500]["ipsm_r2"] == 0
    assert [w[s]["depth_seen"] for s in (9499, 9501, 9502)] == [0.05, 0.05, 0.001]  # lowered after 9501
    assert all(w[s]["sds"] == 0 for s in w) and weights_at(preset_config("llff-3view", sds=True), 2500)["sds"] == 2.0


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from ipsm.run import setup_run, init_state

    def make(**kw):
        cfg = resolve_config(preset_config("smoke", result_dir=str(tmp_path_factory.mktemp("r")), **kw))
        run = setup_run(cfg)
        return run, init_state(run)

    return make


@pytest.mark.parametrize("lam", [2.0, 5.0])
def test_lambda_geo_multiplies_L_geo(smoke_run, lam):
    from ipsm.losses import compute_losses

    run, state = smoke_run(ipsm=False, depth=False, **{"loss.lambda_geo": lam})
    losses, _ = compute_losses(run, state, 6)
    assert set(losses) == {"loss", "loss_l1", "loss_dssim", "loss_geo"}
    torch.testing.assert_close(losses["loss"], 0.8 * losses["loss_l1"] + 0.2 * losses["loss_dssim"] + lam * losses["loss_geo"])


def test_ramp_applies_to_ipsm_and_pseudo_depth_not_geo(smoke_run):
    from ipsm.losses import compute_losses

    run, state = smoke_run()
    losses, _ = compute_losses(run, state, 5)  # smoke: pseudo.start 4, warmup 2 -> ramp 0.5 at step 5
    c = run.cfg.loss
    expect = (
        c.lambda_l1 * losses["loss_l1"]
        + c.lambda_dssim * losses["loss_dssim"]
        + c.lambda_depth_seen * losses["loss_depth_seen"]
        + c.lambda_geo * losses["loss_geo"]
        + 0.5 * (c.lambda_depth_pseudo * losses["loss_depth_pseudo"] + c.lambda_ipsm_r1 * losses["loss_ipsm_r1"] + c.lambda_ipsm_r2 * losses["loss_ipsm_r2"])
    )
    torch.testing.assert_close(losses["loss"], expect)


def test_seen_depth_weight_drops_late(smoke_run):
    from ipsm.losses import compute_losses

    run, state = smoke_run(ipsm=False, geo=False)  # smoke: late_step 10, pseudo window 5..10
    for step, wd in ((3, 0.05), (11, 0.001)):
        losses, _ = compute_losses(run, state, step)
        assert "loss_depth_pseudo" not in losses
        torch.testing.assert_close(losses["loss"], 0.8 * losses["loss_l1"] + 0.2 * losses["loss_dssim"] + wd * losses["loss_depth_seen"])


def test_opacity_reset_clamps_opacities(tmp_path):
    from ipsm.train import train
    from ipsm.run import read_checkpoint

    train(
        preset_config(
            "smoke",
            result_dir=str(tmp_path / "r"),
            ipsm=False,
            depth=False,
            save_video=False,
            save_ply=False,
            **{"schedule.max_steps": 7, "schedule.save_steps": ()},
        ),
        progress=False,
    )  # smoke: reset at step 7
    op = torch.sigmoid(read_checkpoint(tmp_path / "r/ckpts/ckpt_7.pt")["splats"]["opacities"])
    assert op.max() <= 0.01 + 1e-6


# ---- the demo preset: the README's main job ----------------------------------------------------------


def test_demo_preset_trains_ipsm_with_geo_on_the_demo_prior():
    "`ipsm-train demo` = IPSM (R1 + R2) + L_geo on ipsm's own demo prior, no depth terms, the LLFF schedule x0.1."
    from ipsm.config import loss_weights, uses_pseudo_views, validate

    c = validate(preset_config("demo"))
    assert (c.ipsm, c.geo, c.depth, c.sds, c.prior, c.depth_model) == (True, True, False, False, "demo", "none")
    assert {n for n, w in loss_weights(c).items() if w} == {"l1", "dssim", "geo", "ipsm_r1", "ipsm_r2"}
    assert (c.loss.lambda_ipsm_r1, c.loss.lambda_ipsm_r2, c.loss.lambda_geo) == (0.2, 2.0, 2.0)  # the authors' weights, unscaled
    assert (c.schedule.max_steps, c.pseudo.start, c.pseudo.end, c.score.warmup_steps) == (1000, 200, 950, 50)  # schedule x0.1
    assert uses_pseudo_views(c) and c.data.data_dir == "data/demo" and c.device == "cpu"


def test_demo_preset_label_names_the_demo_prior():
    "The label printed on the progress bar and written to cfg.yml / results.json: the demo prior, never 'Stable Diffusion'."
    from ipsm.demo_prior import DEMO_PRIOR_LABEL
    from ipsm.run import prior_label

    c = preset_config("demo")
    assert prior_label(c) == "IPSM with ipsm demo prior"

    class P:
        label = DEMO_PRIOR_LABEL

    got = prior_label(c, P())
    assert got == f"IPSM with {DEMO_PRIOR_LABEL}" and "not Stable Diffusion" in got
    assert prior_label(preset_config("demo", ipsm=False, geo=True)) == "no prior"
