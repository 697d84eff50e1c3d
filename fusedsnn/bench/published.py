"""The study's published figures, kept as data so benchmark tables can print them beside our own
measurements, always labelled as published.

Source: Sun et al., "Intelligence Processing Units Accelerate Neuromorphic Learning"
(arXiv 2211.10725; Neuromorphic Computing and Engineering 4(1) 014004, 2024), Tables II-IV.
Training = forward + BPTT + AdamW, batch 128, 25 steps, MNIST; images/s = batch / wall-clock.
"""

SOURCE = "Sun et al. 2024 (arXiv 2211.10725)"  # callers say "published" beside it

# Table III/IV: training throughput (images/s), average power (W), images/s per W.
THROUGHPUT = {
    "DSNN": {"IPU Mk2": 46297, "A100": 9859, "V100": 7207, "GTX1080": 4640},
    "CSNN": {"IPU Mk2": 15566, "A100": 5608, "V100": 3884, "GTX1080": 2636},
}
POWER_W = {
    "DSNN": {"IPU Mk2": 92.12, "A100": 60.51, "V100": 55.71, "GTX1080": 49.29},
    "CSNN": {"IPU Mk2": 92.57, "A100": 68.86, "V100": 61.99, "GTX1080": 55.44},
}
IMAGES_PER_S_PER_W = {
    "DSNN": {"IPU Mk2": 502.6, "A100": 162.9, "V100": 129.4, "GTX1080": 94.4},
    "CSNN": {"IPU Mk2": 168.2, "A100": 81.4, "V100": 62.7, "GTX1080": 47.5},
}
# Table II: TFLOPS during training (one FLOP = one fused multiply-add, counted with fvcore).
TFLOPS = {
    "DNN": {"IPU Mk2": 1.02, "A100": 0.22, "V100": 0.16, "GTX1080": 0.10},
    "DSNN": {"IPU Mk2": 1.04, "A100": 0.22, "V100": 0.16, "GTX1080": 0.10},
    "CNN": {"IPU Mk2": 3.24, "A100": 0.70, "V100": 0.51, "GTX1080": 0.33},
    "CSNN": {"IPU Mk2": 1.85, "A100": 0.40, "V100": 0.29, "GTX1080": 0.19},
}
# Other published findings the benchmark sections mirror (text, for tables and docs).
FINDINGS = {
    "batch_sweep": "at batch 8 the IPU is about 14x the A100 for both DSNN and CSNN",
    "population": "1 time step with population outputs: best IPU about 145,000 images/s, about 2x the best GPU",
    "population_accuracy": "52.2% (10 outputs, 25 steps, DSNN, CIFAR-10, 5 epochs) nearly matched with 500 outputs in 1 step",
    "precision": "fp16 vs fp32: marginal difference",
}


# ---------------------------------------------------------------------------------------------
# Open Neuromorphic's SNN-library benchmark (a GPU workload: printed beside CUDA rows only)
# ---------------------------------------------------------------------------------------------

OPEN_NEUROMORPHIC_SOURCE = ("Open Neuromorphic, 'Spiking Neural Network (SNN) Library Benchmarks' "
                            "(open-neuromorphic.org, 2023, updated 2024-02)")
#: One Linear(n, n) + one LIF layer, batch 16, 500 steps, forward + backward of ``output.sum()``
#: (each timed apart, summed here), seconds; peak memory by ``torch.cuda.max_memory_allocated``
#: where published (JAX has no such counter: none for Spyx). Full precision unless named.
OPEN_NEUROMORPHIC = {
    "n": 16384, "T": 500, "B": 16, "device": "NVIDIA RTX 4090",
    "results": [
        {"library": "Spyx fp16", "seconds": 0.047, "peak_memory_gb": None},
        {"library": "Spyx fp32", "seconds": 0.076, "peak_memory_gb": None},
        {"library": "Norse, torch.compile", "seconds": 0.110, "peak_memory_gb": 5.43},
        {"library": "SpikingJelly CuPy", "seconds": 0.118, "peak_memory_gb": 5.96},
    ],
}
