"""``alignsam train``: one config in, a run folder out (CleanRL-style, readable top to bottom).

The run folder's files are :class:`~policies.runs.folder.RunFolder`'s; the config is a
:class:`~policies.runs.config.RunConfig`.
"""

from __future__ import annotations

import signal
import warnings
from pathlib import Path
from typing import Any

from alignsam_gym import ENV_ID
from alignsam_gym.devices import cuda_device_count, parse_device
from alignsam_gym.observation import EmbeddingTable
from policies.configs import make_env_kwargs
from policies.imitation.experts import HeuristicExpert
from policies.imitation.kickstarting import KickstartCallback
from policies.imitation.pretraining import pretrain
from policies.runs.checkpoint import RunCheckpoint, load_model
from policies.runs.config import RunConfig
from policies.runs.curve import LearningCurve
from policies.runs.folder import RunFolder
from policies.sb3.callback import SRMCallback
from policies.sb3.episode_images import EpisodeImages
from policies.sb3.presets import make_model

#: the id SB3's env builders use: with its module, so subprocess workers import the package too
TRAINING_ENV_ID = f"alignsam_gym:{ENV_ID}"


def make_training_env(config: RunConfig) -> Any:
    """The config's vector env: ``n_envs`` envs seeded ``seed + i``, with episode statistics (Monitor)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    config = RunConfig.from_dict(config)
    env_kwargs = make_env_kwargs({"device": config.device}, config.env)  # the run's device reaches the envs' models
    if config.vec_env == "subproc" and _may_use_cuda(env_kwargs["device"]):
        warnings.warn(f"vec_env 'subproc' with device {env_kwargs['device']!r}: every worker process holds its own "
                      "CUDA context and model copy and decodes alone; vec_env 'batched' runs all envs on one model "
                      "with batched decoding", RuntimeWarning, stacklevel=2)
    if config.vec_env == "batched":
        from policies.sb3.vec_env import AlignSAMVecEnv

        env = AlignSAMVecEnv(config.n_envs, **env_kwargs)
        env.seed(config.seed)
        return VecMonitor(env)
    if env_kwargs.get("obs_mode") == "compact":
        if config.vec_env == "subproc":
            raise ValueError("env.obs_mode='compact' needs the envs in the training process: use vec_env 'batched' "
                             "or 'dummy', not 'subproc'")
        env_kwargs["embedding_table"] = EmbeddingTable()  # one table for every env and the policy
    return make_vec_env(TRAINING_ENV_ID, n_envs=config.n_envs, seed=config.seed, env_kwargs=env_kwargs,
                        vec_env_cls=SubprocVecEnv if config.vec_env == "subproc" else DummyVecEnv)


def _may_use_cuda(device: str) -> bool:
    """Whether an env device argument can mean CUDA (asked without initialising CUDA)."""
    spec = parse_device(device)
    return spec.startswith("cuda") or (spec == "auto" and cuda_device_count() > 0)


def evaluation_env(config: RunConfig) -> dict[str, Any]:
    """The env kwargs of a run's learning-curve evaluations: its env on the validation split (the training
    images outside its few-shot subset: same ``num_images`` and ``subset_seed``; the test split is left to the
    final benchmark), with the paper's evaluation protocol (SRM initial prompts)."""
    return make_env_kwargs(config.env, split="val", init_prompts="srm", device=config.device)


def train(config: RunConfig | dict[str, Any], out: str | Path, progress_bar: bool = False, resume: bool = False,
          verbose: bool = True) -> Path:
    """Train ``config`` into the run folder ``out``, or with ``resume`` continue the run there until its
    ``total_timesteps``.

    With ``init: {imitation: ...}`` the new model's policy is first cloned from an expert
    (:func:`policies.imitation.pretrain`; its record in ``imitation.json``) and checkpointed at step 0; with its
    ``kickstart_weight`` the expert then labels the RL rollouts for a decaying imitation step after each update
    (:class:`policies.imitation.KickstartCallback`; ``kickstart.jsonl``), resumed runs included.
    Checkpoints are written every ``checkpoint_every`` env steps, at the end, and when SIGINT or
    SIGTERM arrives (training then stops cleanly after the current step); a checkpoint cut short while it
    was saved is set aside (:meth:`RunFolder.torn_checkpoint`) and the run starts again. A resumed run loads the
    model, SRM, optimiser states, step counter and random states, and logs to the same TensorBoard
    curve from the step where it stopped; its envs are reseeded with ``seed + steps done`` (an episode
    cut by the interruption is not replayed). ``verbose`` prints where and when checkpoints go.
    """
    config = RunConfig.from_dict(config)
    run = RunFolder(out)
    torn = run.torn_checkpoint()
    if torn is not None:  # killed while saving: nothing consistent to resume from
        aside = run.set_torn_checkpoint_aside()
        print(f"warning: {run.path} holds a checkpoint cut short while it was saved ({torn}); its files are in "
              f"{aside} and the run starts again from step 0", flush=True)
        resume = False
    if not resume and run.has_model():
        raise FileExistsError(f"{run.path} already holds a trained run; pass --resume to continue it or choose "
                              "another --out")
    if resume and not run.has_model():
        raise FileNotFoundError(f"{run.path}: no {RunFolder.MODEL} to resume")
    saved = config
    done = run.restore_random_state() if resume else None
    if done is not None:
        config = config.with_changes(seed=config.seed + done)  # fresh episodes, not the first ones again
    env = make_training_env(config)
    identity = env.get_attr("backend_identity", indices=[0])[0]
    recorded = run.backend_identity() if resume else None
    if recorded is not None and recorded != identity:
        env.close()
        raise ValueError(f"{run.path} was trained with the segmenter {recorded}; its config now builds {identity}, so "
                         "resuming would continue on another environment. Pin the backend it was trained with in "
                         f"{run.config_file} (env: backend_kwargs, e.g. decoder: v1) or train a new run")
    if resume and recorded is None:
        print(f"warning: {run.path} does not record the segmenter it was trained with (an older run); resuming "
              f"with {identity}", flush=True)
    run.write_config(saved)
    run.write_backend_identity(identity)
    run.write_train_images(env.get_attr("image_names", indices=[0])[0])  # the few-shot training subset

    callback = None
    if config.srm.enabled:
        callback = SRMCallback(learning_rate=config.srm.learning_rate, updates_per_step=config.srm.updates_per_step,
                               push_every=config.srm.push_every, device=config.device)
    if resume:
        model = load_model(config.algorithm, run.model_file, env, config.device, config.hyperparameters)
        model.tensorboard_log = str(run.tensorboard_dir)
        if callback is not None and run.srm_file.exists():
            callback.load(run.srm_file)
    else:
        model = make_model(config.algorithm, env, device=config.device, seed=config.seed,
                           tensorboard_log=str(run.tensorboard_dir), **config.hyperparameters)
        if config.init.imitation is not None:  # cloned from the expert, the SRM training on every visited state
            after_step = None
            if callback is not None:
                callback.init_callback(model)
                callback.on_training_start({}, {})
                after_step = callback.on_step
            if verbose:
                print(f"imitation: {config.init.imitation.expert} expert, {config.init.imitation.dagger_rounds} DAgger "
                      "rounds", flush=True)
            run.write_imitation(pretrain(model, config.init.imitation, seed=config.seed, after_step=after_step))
            run.save_checkpoint(model, callback)  # step 0: a resumed run starts from the cloned policy

    kickstart = None
    if config.init.imitation is not None and config.init.imitation.kickstart_weight:
        settings = config.init.imitation
        run.drop_kickstart_after(model.num_timesteps)
        kickstart = KickstartCallback(HeuristicExpert(settings.expert, env, config.seed), settings.kickstart_weight,
                                      settings.kickstart_decay, settings.learning_rate, settings.kickstart_epochs,
                                      settings.batch_size, settings.mask_actions, settings.temperature,
                                      seed=config.seed, on_update=run.append_kickstart)
    remaining = config.total_timesteps - model.num_timesteps
    checkpoint = RunCheckpoint(run, config.checkpoint_every, callback, verbose=int(verbose))
    images = curve = None
    if config.log_frames_every:  # what the agent does, in TensorBoard
        images = EpisodeImages(make_env_kwargs({"device": config.device}, config.env), config.log_frames_every)
    if config.eval_every:  # learning curves: validation images every eval_every env steps
        curve = LearningCurve(run, config.algorithm, evaluation_env(config), config.eval_every,
                              config.eval_images, callback)
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining,
                        callback=[c for c in (callback, kickstart, images, curve, checkpoint) if c is not None],
                        progress_bar=progress_bar, reset_num_timesteps=not resume, tb_log_name="run")
    finally:  # an interrupted run keeps what it learned
        if model.num_timesteps > 0 or not resume:
            run.save_checkpoint(model, callback)
        env.close()
    if checkpoint.stop_signal is not None:
        print(f"stopped by signal {signal.Signals(checkpoint.stop_signal).name} at step {model.num_timesteps}; "
              f"continue with: alignsam train --resume {run.path}", flush=True)
    return run.path
