"""The package's imports form no cycle. ``lint-imports`` checks the layers (pyproject.toml), but an
import inside a function, or one only for type checking, can close a cycle the layers do not see."""

from __future__ import annotations

import grimp


class TestImports:
    def test_no_module_imports_itself_through_others(self) -> None:
        """Every import counts: at module level, inside functions, and under TYPE_CHECKING."""
        graph = grimp.build_graph("trend")
        cycles = {tuple(chain) for module in graph.modules
                  for imported in graph.find_modules_directly_imported_by(module)
                  if (chain := graph.find_shortest_chain(importer=imported, imported=module))}
        assert cycles == set(), sorted(cycles)
