"""Official network files -> our networks (and back), one module per format and lineage.

`pickles` tells a file's format and lineage from the file itself and hands it to
`tf_progressive` (ProGAN, StyleGAN v1), `tf_stylegan2` (StyleGAN2 TF) or `torch_stylegan2`
(stylegan2-ada-pytorch and the stylegan3 code base; its StyleGAN3 generators:
`torch_stylegan3`). `pickle_reader` and `safe_pickle` read pickles as data, never running
them. Nothing here reads runs or network directories: that is `store/`.
"""
