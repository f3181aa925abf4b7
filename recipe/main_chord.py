"""`python -m recipe.main_chord`: kept for users' scripts; the entry point is `recipe.train.main`."""

from recipe.train.main import main

if __name__ == "__main__":
    main()
