"""The network's layers as a tree: its stages C1–C5, their blocks and modules, each with its
type and output shape. Picking a module shows its channels in the grid and its Grad-CAM;
picking a stage shows that stage, as keys 1–5 do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from visualizer.core import FeatureLayer

COLUMNS = ("Layer", "Type", "Output shape")
AFTER_STAGES = "after C5"  # the group of layers after the last stage (average pooling)
ROLE = Qt.ItemDataRole.UserRole  # an item's layer name, or "stage:C3" for a stage's group
STAGE_PREFIX = "stage:"
HINT = "Pick a layer to see its channels and its Grad-CAM; a stage to see the stage (keys 1–5)."


def shape_text(shape: Sequence[int]) -> str:
    """``(256, 56, 56)`` as ``"256×56×56"``."""
    return "×".join(str(n) for n in shape)


def tree_parents(layers: Sequence[FeatureLayer]) -> dict[str, str | None]:
    """Each layer's parent in the tree: the nearest module it is part of (by name) in the
    same stage, else None (the layer sits directly under its stage)."""
    stage_of = {layer.name: layer.stage for layer in layers}
    parents: dict[str, str | None] = {}
    for layer in layers:
        parts = layer.name.split(".")
        parents[layer.name] = None
        for end in range(len(parts) - 1, 0, -1):
            ancestor = ".".join(parts[:end])
            if ancestor in stage_of and stage_of[ancestor] == layer.stage:
                parents[layer.name] = ancestor
                break
    return parents


class LayerTree(QWidget):
    """Every feature layer of the network in use, grouped by stage and by block."""

    layer_chosen = Signal(str)  # a feature layer's name
    stage_chosen = Signal(str)  # "C1" … "C5"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layers: tuple[FeatureLayer, ...] = ()
        self._items: dict[str, QTreeWidgetItem] = {}  # by layer name, and "stage:C1" …
        self.caption = QLabel("The layers appear once the network has loaded.")
        self.caption.setObjectName("readout")
        self.caption.setWordWrap(True)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter layers by name or type…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filtered)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setExpandsOnDoubleClick(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.resizeSection(0, 240)
        header.resizeSection(1, 120)
        self.tree.itemClicked.connect(self._clicked)
        self.tree.itemActivated.connect(self._clicked)  # Enter on a row picks it too
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree, 1)

    def set_layers(self, layers: Sequence[FeatureLayer], network: str = "") -> None:
        """List ``layers`` (``Analyzer.feature_layers()``, in execution order) of ``network``."""
        layers = tuple(layers)
        if layers == self.layers:
            return
        self.layers = layers
        self.tree.clear()
        self._items = {}
        parents = tree_parents(layers)
        for layer in layers:  # the stages' groups, in the order their layers run
            group = STAGE_PREFIX + (layer.stage or AFTER_STAGES)
            if group not in self._items:
                self._items[group] = self._group(layer.stage)
        # A module's hook fires after its children's: parents are made first, by depth.
        for layer in sorted(layers, key=lambda layer: layer.name.count(".")):
            parent = parents[layer.name]
            above = (
                self._items[parent]
                if parent
                else self._items[STAGE_PREFIX + (layer.stage or AFTER_STAGES)]
            )
            item = QTreeWidgetItem([layer.name, layer.module_type, shape_text(layer.shape)])
            item.setData(0, ROLE, layer.name)
            item.setToolTip(
                0, f"{layer.name} ({layer.module_type}), output {shape_text(layer.shape)}"
            )
            self._items[layer.name] = item
            above.addChild(item)
        self._order_children()
        for group in self._groups():
            group.setExpanded(True)
        count = len(layers)
        self.caption.setText(f"{network}: {count} layers whose output is a feature map. {HINT}")
        self._filtered(self.filter.text())

    def clear_layers(self, text: str) -> None:
        """List nothing, and say ``text`` (e.g. that another network's layers are coming)."""
        self.layers = ()
        self._items = {}
        self.tree.clear()
        self.caption.setText(text)

    def show_layer(self, layer: str | None, stage: str) -> None:
        """Select ``layer`` (None: the group of ``stage``) without reporting it as a choice."""
        item = self._items.get(layer) if layer else self._items.get(STAGE_PREFIX + stage)
        with QSignalBlocker(self.tree):
            if item is None:
                self.tree.clearSelection()
                return
            parent = item.parent()
            while parent is not None:
                parent.setExpanded(True)
                parent = parent.parent()
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item, QAbstractItemView.ScrollHint.PositionAtCenter)

    def item(self, name: str) -> QTreeWidgetItem | None:
        """The row of layer ``name`` (or of a stage, ``"stage:C2"``)."""
        return self._items.get(name)

    def names(self) -> set[str]:
        """The names of the layers listed."""
        return {layer.name for layer in self.layers}

    def _group(self, stage: str | None) -> QTreeWidgetItem:
        shapes = [layer for layer in self.layers if layer.stage == stage]
        if stage is None:
            item = QTreeWidgetItem([AFTER_STAGES, "", ""])
            item.setData(0, ROLE, STAGE_PREFIX + AFTER_STAGES)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsSelectable)
        else:
            last = shapes[-1] if shapes else None  # a stage's output: its last module's
            item = QTreeWidgetItem(
                [stage, f"stage ({len(shapes)} layers)", shape_text(last.shape) if last else ""]
            )
            item.setData(0, ROLE, STAGE_PREFIX + stage)
            item.setToolTip(0, f"Show the stage {stage}'s channels and Grad-CAM")
        font = item.font(0)
        font.setBold(True)
        item.setFont(0, font)
        self.tree.addTopLevelItem(item)
        return item

    def _groups(self) -> list[QTreeWidgetItem]:
        return [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]

    def _order_children(self) -> None:
        """Children in the order the network runs them (by their first layer)."""
        first = {layer.name: index for index, layer in enumerate(self.layers)}

        def start(item: QTreeWidgetItem) -> int:
            below = [start(item.child(i)) for i in range(item.childCount())]
            return min([first.get(item.data(0, ROLE), len(first)), *below])

        def order(item: QTreeWidgetItem) -> None:
            children = item.takeChildren()
            children.sort(key=start)
            item.addChildren(children)
            for child in children:
                order(child)

        for group in self._groups():
            order(group)

    def _clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        name = item.data(0, ROLE)
        if not name:
            return
        if name.startswith(STAGE_PREFIX):
            if name != STAGE_PREFIX + AFTER_STAGES:
                self.stage_chosen.emit(name.removeprefix(STAGE_PREFIX))
        else:
            self.layer_chosen.emit(name)

    def _filtered(self, text: str) -> None:
        """Show the rows whose name or type holds ``text`` (and the rows above them)."""
        words = text.strip().lower()
        iterator = QTreeWidgetItemIterator(self.tree)
        shown: set[str] = set()
        items = []
        while iterator.value() is not None:
            items.append(iterator.value())
            iterator += 1
        for item in items:
            match = not words or words in item.text(0).lower() or words in item.text(1).lower()
            if match:
                above = item
                while above is not None:
                    shown.add(above.data(0, ROLE))
                    above = above.parent()
        for item in items:
            visible = item.data(0, ROLE) in shown
            item.setHidden(not visible)
            if words and visible and item.childCount():
                item.setExpanded(True)
