"""``unet data fetch``: the larger public datasets of the reference's scenarios, by name.

The catalogue (:mod:`unet_core.fetch.catalog`) says what each name is and its sha256;
:mod:`unet_core.fetch.download` gets it into a cache with pooch and copies it where asked.
"""
