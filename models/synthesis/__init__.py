"""Minority-class synthesis: generators that learn a rare defect label and write marked
synthetic images (``kensa synthesize``). One registry, ``@register_generator``."""
