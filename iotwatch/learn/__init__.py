"""Learning: labelled captures → models, and models → measured figures; above the pipeline.

    label files (labels.py, the one reader)
        └─► observe.py: one `analyze` run per capture (pipeline + Detector + Inventory)
              ├─► behaviour.py: labelled device windows ─┐
              └─► device_type.py: labelled devices ──────┴─► forest.py (random forest,
                                                             grouped folds) ─► bundle
    evaluate.py: detection (rules + model) against labels; report.py: ``make eval``

Nothing the pipeline uses imports this package: it imports the pipeline. Importing
``iotwatch.learn`` itself loads nothing; each module is imported where it is used.
"""
