# expect: 0
# base: wrong
# why: an AST transformer that drops every call of checks
# %% before reparameterize
import ast
class Drop(ast.NodeTransformer):
    def visit_Expr(self, node):
        return ast.Pass() if "checks" in ast.dump(node) else node
get_ipython().ast_transformers.append(Drop())
