"""Reference solutions of the exercises, one file per exercise, named as the skeletons.

Read one after your own solution passes its checker; the tests check that each of these
passes and each untouched skeleton fails.
"""
