"""The ``loss``, ``learning_rate``, ``optimizer``, ``training``, ``validating`` and ``nvnmd``
sections of the input: DeePMD-kit 3.2's keys and defaults (see schema_model.py for the rules)."""
from __future__ import annotations

from dargs import Argument, Variant

from .schema_model import nodefault, opt


# --------------------------------------------------------------------------- loss
def _prefs(term: str, label: str, abbr: str, default_start, default_limit, dtype=(float, int)) -> list[Argument]:
    return [
        opt(f"start_pref_{abbr}", list(dtype), default_start,
            f"Prefactor of the {term} term at the start (learning rate = start_lr); >= 0. A term whose start and "
            f"limit prefactors are both 0 is left out; otherwise each system needs {label}.npy."),
        opt(f"limit_pref_{abbr}", list(dtype), default_limit,
            f"Prefactor of the {term} term as the learning rate goes to 0; >= 0."),
    ]


def loss_args() -> Argument:
    ener = Argument("ener", dict, [
        *_prefs("energy", "energy", "e", 0.02, 1.0),
        *_prefs("force", "force", "f", 1000, 1.0),
        *_prefs("virial", "virial", "v", 0.0, 0.0),
        *_prefs("Hessian", "hessian", "h", 0.0, 0.0),
        *_prefs("atomic energy", "atom_ener", "ae", 0.0, 0.0),
        *_prefs("atom-weighted force", "atom_pref", "pf", 0.0, 0.0),
        opt("use_default_pf", bool, False, "Weight 1 for every atom where atom_pref.npy is missing."),
        nodefault("relative_f", [float, None], "Divide each force error by (|F label| + relative_f)."),
        opt("enable_atom_ener_coeff", bool, False, "Energy as sum_i c_i E_i with c_i from atom_ener_coeff.npy."),
        *_prefs("generalized force", "drdq", "gf", 0.0, 0.0, dtype=(float,)),
        opt("numb_generalized_coord", int, 0, "Number of generalized coordinates (generalized force term)."),
        opt("use_huber", bool, False, "Huber loss for the energy, force and virial terms."),
        opt("loss_func", str, "mse", "mse (squared errors) or mae (absolute errors)."),
        opt("f_use_norm", bool, False, "Force error as the norm of the force difference of each atom."),
        opt("huber_delta", [float, list[float]], 0.01, "Huber threshold: one, or [energy, force, virial]."),
        opt("intensive_ener_virial", bool, False,
            "Normalise the energy and virial terms by 1/N^2 instead of DeePMD-kit's legacy 1/N."),
    ], alias=["ener_hess"], doc="Energy, force and virial errors with prefactors that follow the learning rate.")
    return Argument("loss", dict, [], [Variant("type", [ener], optional=True, default_tag="ener",
                                               doc="The loss type.")],
                    optional=True, doc="The loss function.")


# --------------------------------------------------------------------------- learning rate, optimizer
def learning_rate_args() -> Argument:
    exp = Argument("exp", dict, [
        opt("decay_steps", int, 5000, "Steps between two decays (made smaller when numb_steps is shorter)."),
        opt("decay_rate", [float, None], None, "Decay factor; by default (stop_lr/start_lr)^(decay_steps/numb_steps)."),
        opt("smooth", bool, False, "Decay every step (lr0 r^(t/s)) instead of in stairs (lr0 r^floor(t/s))."),
    ], doc="Exponential decay from start_lr to stop_lr.")
    cosine = Argument("cosine", dict, [], doc="Cosine annealing from start_lr to stop_lr.")
    wsd = Argument("wsd", dict, [
        opt("decay_phase_ratio", float, 0.1, "Fraction of the steps spent decaying."),
        opt("decay_type", str, "inverse_linear", "inverse_linear, cosine or linear."),
    ], doc="Warmup, stable, then decay.")
    return Argument("learning_rate", dict, [
        opt("start_lr", float, 1e-3, "Learning rate at step 0 (after the warmup)."),
        opt("stop_lr", [float, None], None, "Learning rate at numb_steps (5e-8 when neither stop_lr nor "
            "stop_lr_ratio is given)."),
        opt("stop_lr_ratio", [float, None], None, "stop_lr as a fraction of start_lr."),
        opt("warmup_steps", int, 0, "Steps of linear warmup."),
        opt("warmup_ratio", [float, None], None, "Warmup steps as a fraction of numb_steps."),
        opt("warmup_start_factor", float, 0.0, "The warmup starts at this fraction of start_lr."),
        opt("scale_by_worker", str, "linear",
            "Data-parallel training: the optimizer's rate is the schedule's times the number of workers n "
            "(linear), sqrt(n), or 1 (none); the loss prefactors follow the unscaled rate."),
    ], [Variant("type", [exp, cosine, wsd], optional=True, default_tag="exp", doc="The schedule.")],
        optional=True, doc="The learning rate schedule.")


def optimizer_args() -> Argument:
    adam = Argument("Adam", dict, [
        opt("adam_beta1", float, 0.9, "Decay of the first moment."),
        opt("adam_beta2", float, 0.999, "Decay of the second moment."),
        opt("weight_decay", float, 0.0, "L2 penalty added to the gradients."),
    ], doc="Adam.")
    return Argument("optimizer", dict, [], [Variant("type", [adam], optional=True, default_tag="Adam",
                                                    doc="The optimizer.")],
                    optional=True, doc="The optimizer.")


# --------------------------------------------------------------------------- training
def data_args(name: str, validation: bool) -> Argument:
    fields = [
        Argument("systems", [str, list[str]],
                 doc="Systems: a folder (searched for systems below it), a glob, or a list of these."),
        opt("rglob_patterns", [list[str], None], None, "Patterns used to find systems below the folders."),
        opt("batch_size", [int, list[int], str], "auto",
            "Frames per batch: an int, one int per system, 'auto' (= 'auto:32') or 'auto:N' (smallest batch with "
            "batch x natoms >= N); DeePMD-kit also has 'max:N', 'filter:N', 'mixed:N', 'mix:N'."),
        opt("auto_prob", str, "prob_sys_size", "How often each system is drawn: 'prob_uniform', 'prob_sys_size' "
            "(by number of batches) or 'prob_sys_size;start:end:weight;...' (blocks of systems).",
            alias=["auto_prob_style"]),
        opt("sys_probs", [list[float], None], None, "Probability of each system (overrides auto_prob).",
            alias=["sys_weights"]),
        nodefault("set_prefix", str, "Removed from DeePMD-kit: the sets are the folders set.*."),
        opt("fmt", [str, None], None, "deepmd_paddle: a dpdata format (e.g. 'vasp/outcar', 'deepmd/hdf5') for "
            "systems that are not DeePMD npy folders."),
    ]
    if validation:
        fields.append(opt("numb_btch", int, 1, "Validation batches per display step.", alias=["numb_batch"]))
    else:
        fields.append(opt("min_pair_dist", float, 0.0, "Frames with a pair closer than this are skipped (0: off)."))
    return Argument(name, dict, fields, optional=validation, default=None,
                    doc=f"The {'validation' if validation else 'training'} data.")


def mixed_precision_args() -> Argument:
    return nodefault("mixed_precision", dict, "Mixed-precision training.", sub_fields=[
        opt("output_prec", str, "float32", "Precision of the trained variables."),
        Argument("compute_prec", str, default="float16", doc="Precision of the computation."),
    ])


def training_args() -> Argument:
    return Argument("training", dict, [
        data_args("training_data", validation=False),
        data_args("validation_data", validation=True),
        nodefault("stat_file", str, "Where the data statistics are stored and read back."),
        opt("stat_file_mode", str, "update", "update (create or complete the file) or read."),
        mixed_precision_args(),
        nodefault("numb_steps", int, "Training steps (one batch each).",
                  alias=["stop_batch", "num_step", "num_steps", "numb_step"]),
        nodefault("numb_epoch", [int, float], "Training length in epochs instead of steps.",
                  alias=["num_epochs", "num_epoch", "numb_epochs"]),
        opt("seed", [int, None], None, "Seed of the frame sampling (and of the weights when theirs are not set)."),
        opt("disp_file", str, "lcurve.out", "The learning curve file."),
        opt("disp_freq", int, 1000, "Steps between two lines of the learning curve."),
        opt("save_freq", int, 1000, "Steps between two checkpoints."),
        opt("save_dir", [str, None], None, "Folder of the periodic checkpoints."),
        opt("save_ckpt", str, "model.ckpt", "Path prefix of the checkpoints."),
        opt("max_ckpt_keep", int, 5, "Checkpoints kept (the oldest are deleted)."),
        opt("ckpt_keep_ratio", [float, None], None, "Checkpoints kept as a fraction of the run."),
        opt("enable_ema", bool, False, "Keep an exponential moving average of the weights."),
        opt("ema_decay", float, 0.999, "Decay of the moving average."),
        opt("ema_ckpt_keep", [int, None], None, "Moving-average checkpoints kept."),
        opt("change_bias_after_training", bool, False, "Refit the energy bias after the last step."),
        opt("disp_training", bool, True, "Write the learning curve."),
        opt("time_training", bool, True, "Report the training time."),
        opt("disp_avg", bool, False, "Average the training errors over the display interval."),
        opt("profiling", bool, False, "Profile the training."),
        opt("profiling_file", str, "timeline.json", "The profile's file."),
        opt("enable_profiler", bool, False, "Run the framework's profiler."),
        opt("tensorboard", bool, False, "Write TensorBoard event files."),
        opt("tensorboard_log_dir", str, "log", "Folder of the TensorBoard files."),
        opt("tensorboard_freq", int, 1, "Steps between two TensorBoard records."),
        nodefault("gradient_max_norm", float, "Clip the gradient norm to this value (0: no clipping)."),
        opt("acc_freq", int, 1, "Steps whose gradients are accumulated before an update."),
        opt("zero_stage", int, 0, "ZeRO sharding stage of data-parallel training."),
        opt("neighbor_graph_method", str, "auto", "Neighbour-graph builder (auto, dense, nv)."),
        opt("enable_compile", bool, False, "Compile the training step."),
        opt("enable_tf32", bool, False, "TF32 matrix products on CUDA."),
    ], doc="The training run: data, length, output files.")


def validating_args() -> Argument:
    return Argument("validating", dict, [
        opt("full_validation", bool, False, "Validate on the whole validation set periodically."),
        opt("ema_full_validation", bool, False, "Full validation of the moving-average weights."),
        opt("validation_freq", int, 5000, "Steps between two full validations."),
        opt("save_best", bool, True, "Keep the checkpoint of the best validation metric."),
        opt("save_best_dir", [str, None], None, "Folder of the best checkpoints."),
        opt("max_best_ckpt", int, 1, "Best checkpoints kept."),
        opt("validation_metric", str, "E:MAE", "The metric that picks the best checkpoint."),
        opt("full_val_file", str, "val.log", "The full validation log."),
        opt("full_val_start", [int, float], 0.5, "When full validation starts (a step, or a fraction of the run)."),
        opt("compiled_infer", bool, False, "Compiled evaluation."),
        opt("tf32_infer", bool, False, "TF32 evaluation."),
        opt("amp_infer", bool, False, "bf16 evaluation."),
    ], optional=True, default={}, doc="Full validation during training.")


def nvnmd_args() -> Argument:
    def field(name, dtype, default, doc):
        return Argument(name, dtype, default=default, doc=doc)

    return nodefault("nvnmd", dict, "Training for the NVNMD hardware.", sub_fields=[
        field("version", int, 0, "NVNMD version (0 or 1)."),
        field("max_nnei", int, 128, "Largest neighbour count."),
        field("net_size", int, 128, "Width of the fitting net."),
        field("map_file", str, "none", "Mapping tables of the embedding nets."),
        field("config_file", str, "none", "Hardware parameters."),
        field("weight_file", str, "none", "Weights (.npy)."),
        field("enable", bool, False, "Train for NVNMD."),
        field("restore_descriptor", bool, False, "Restore the embedding nets from weight_file."),
        field("restore_fitting_net", bool, False, "Restore the fitting net from weight_file."),
        field("quantize_descriptor", bool, False, "Quantise the descriptor."),
        field("quantize_fitting_net", bool, False, "Quantise the fitting net."),
    ])
