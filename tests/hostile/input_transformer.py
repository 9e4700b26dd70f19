# expect: 0
# base: wrong
# why: an input transformer that empties every later cell
# %% before reparameterize
get_ipython().input_transformers_post.append(lambda lines: ["print('passed')\n"])
