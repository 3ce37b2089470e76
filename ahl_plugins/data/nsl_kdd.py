"""NSL-KDD intrusion detection: a natural open-set test.

Anomaly types are the four attack *groups* (DoS, Probe, R2L, U2R); the attack
name is kept in ``dataset.subtypes``. The training and test files are the
``train``/``test`` partitions, so ``make_split(ds, "hard", anomaly_type="DoS")``
labels DoS attacks from the training file and tests on the test file's other
groups. 18 of the test file's attack names never occur in the 20% training
file (17 against the full ``KDDTrain+``, which has ``perl``); see
:func:`unseen_attack_names`. Columns 1-3 (protocol_type, service, flag) are
one-hot encoded with the vocabulary of the training file; the difficulty
column is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.tables import read_table
from ahl_plugins.data.tabular import TabularEncoder
from ahl_plugins.errors import DataError

FEATURES = (
    "duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot "
    "num_failed_logins logged_in num_compromised root_shell su_attempted num_root num_file_creations "
    "num_shells num_access_files num_outbound_cmds is_host_login is_guest_login count srv_count "
    "serror_rate srv_serror_rate rerror_rate srv_rerror_rate same_srv_rate diff_srv_rate "
    "srv_diff_host_rate dst_host_count dst_host_srv_count dst_host_same_srv_rate dst_host_diff_srv_rate "
    "dst_host_same_src_port_rate dst_host_srv_diff_host_rate dst_host_serror_rate dst_host_srv_serror_rate "
    "dst_host_rerror_rate dst_host_srv_rerror_rate"
).split()
CATEGORICAL = ("protocol_type", "service", "flag")
ATTACK_GROUPS: dict[str, tuple[str, ...]] = {
    "DoS": ("back", "land", "neptune", "pod", "smurf", "teardrop", "apache2", "mailbomb", "processtable", "udpstorm"),
    "Probe": ("ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"),
    "R2L": (
        "ftp_write",
        "guess_passwd",
        "imap",
        "multihop",
        "phf",
        "spy",
        "warezclient",
        "warezmaster",
        "named",
        "sendmail",
        "snmpgetattack",
        "snmpguess",
        "xlock",
        "xsnoop",
        "worm",
    ),
    "U2R": ("buffer_overflow", "loadmodule", "perl", "rootkit", "httptunnel", "ps", "sqlattack", "xterm"),
}
TRAIN_FILES = ("KDDTrain+_20Percent.txt", "KDDTrain+.txt")
TEST_FILE = "KDDTest+.txt"


def load_nsl_kdd(
    root: str | Path,
    *,
    train_file: str | None = None,
    test_file: str = TEST_FILE,
    groups: Mapping[str, tuple[str, ...]] | None = None,
    name: str = "nsl_kdd",
) -> OSADDataset:
    """Both NSL-KDD files as one vector dataset (types = attack group, subtypes = attack name)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"NSL-KDD folder not found: {root}")
    if train_file is None:
        train_file = next((f for f in TRAIN_FILES if (root / f).is_file()), TRAIN_FILES[0])
    group_of = {attack: group for group, names in (groups or ATTACK_GROUPS).items() for attack in names}

    tables, partitions, ids = [], [], []
    for file, part in ((train_file, "train"), (test_file, "test")):
        path = root / file
        if not path.is_file():
            raise DataError(f"NSL-KDD file missing: {path} (expected {train_file} and {test_file} in {root})")
        names, table = read_table(path, delimiter=",", header=False)
        if len(names) not in (42, 43):
            raise DataError(f"{path}: expected 43 columns (41 features, attack name, difficulty), got {len(names)}")
        tables.append(table)
        n = len(table["0"])
        partitions.append(np.full(n, part))
        ids += [f"{file}:{i}" for i in range(n)]

    columns = {feature: np.concatenate([t[str(j)] for t in tables]) for j, feature in enumerate(FEATURES)}
    attacks = np.char.lower(np.concatenate([t["41"] for t in tables]))
    attacks = np.char.rstrip(attacks, ".")  # the original KDD'99 files end names with '.'
    partition = np.concatenate(partitions)
    unknown = sorted(set(attacks.tolist()) - set(group_of) - {NORMAL_TYPE})
    if unknown:
        raise DataError(f"NSL-KDD: attack names {unknown} belong to no group; pass groups={{group: (names...)}}")
    labels = (attacks != NORMAL_TYPE).astype(np.int64)
    types = np.asarray([group_of.get(a, NORMAL_TYPE) for a in attacks.tolist()])

    encoder = TabularEncoder.fit(columns, CATEGORICAL, np.flatnonzero(partition == "train"))
    X = encoder.transform(columns)
    return OSADDataset(
        name=name,
        input_kind="vector",
        inputs=X,
        labels=labels,
        types=types,
        ids=ids,
        partition=partition,
        feature_names=encoder.feature_names,
        subtypes=attacks,
        encoder=encoder,
        raw_table=columns,
        info={
            "source": str(root.resolve()),
            "layout": "nsl_kdd",
            "train_file": train_file,
            "test_file": test_file,
            "encoder_fitted_on": "train partition",
        },
    )


def unseen_attack_names(dataset: OSADDataset) -> list[str]:
    """Attack names in the test partition that never occur in the training partition."""
    if dataset.subtypes is None:
        raise DataError(f"dataset {dataset.name!r} carries no attack names (subtypes)")
    anomalies = dataset.labels == 1
    seen = set(dataset.subtypes[anomalies & (dataset.partition == "train")].tolist())
    return sorted(set(dataset.subtypes[anomalies & (dataset.partition == "test")].tolist()) - seen)
