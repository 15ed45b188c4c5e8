"""Networks, one file per family, with the family table (`registry`) and the sampling
calls every caller shares (`sampling`). They import only `nn/`: nothing here knows about
training, files or pickles.

    sampling -> registry -> stylegan.py (v1) -> progan.py      (TF lineage)
                         -> stylegan3.py     -> stylegan2.py   (PyTorch lineage)
"""
