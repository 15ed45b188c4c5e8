"""ProGAN, StyleGAN, StyleGAN2(-ADA) and StyleGAN3 in JAX/Flax.

Layers, each importing only those below it (`lint-imports` holds it; pyproject.toml):

    cli                                   one entry point, a module per subcommand
    benchmarks  soak                      what measures the rest
    serve  tools                          what users run on a generator
    generate                              seeds / ws -> images, the tools' shared flags
    train       config · loop · families -> stylegan2/ | progressive/ -> stage, backends
    metrics     detectors, FID/KID/PR/IS/PPL/equivariance, the runner
    store       load (anything) -> runs | network dirs -> Orbax checkpoints
    convert     official pickles: torch_stylegan2/3, tf_stylegan2, tf_progressive
    models      sampling -> registry (the family table) -> progan stylegan stylegan2 stylegan3
    augment     the ADA pipe
    nn  data    layers and kernels | datasets and the input pipeline
    atomic  images  distributed  compilation_cache  pretrained
"""
