"""Recipes: end-to-end jobs built on the library.

A recipe joins the library's parts into one job (data, kit, training, inference, evaluation)
and may import any of them; the library never imports a recipe, and only the CLI runs one.
"""
