"""python -m projector.train"""
from projector.train.stage import main

raise SystemExit(main())
