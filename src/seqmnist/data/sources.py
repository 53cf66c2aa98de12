"""The built-in datasets: where to download them and how to recognise their files."""

from __future__ import annotations

from dataclasses import dataclass

# The four files every MNIST-like dataset has, named without ".gz".
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset and the checksums known for it.

    Both checksums are optional because what is known differs: for MNIST we know
    the sha256 of the decompressed content (it holds for any re-compression of
    the file), for Fashion-MNIST only the sha256 of the published .gz files.
    """

    stem: str  # file name without ".gz"
    content_sha256: str | None = None
    gz_sha256: str | None = None

    @property
    def gz_name(self) -> str:
        return f"{self.stem}.gz"


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset: its class names, mirrors (tried in order) and files."""

    name: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]  # base URLs; a file's URL is the base plus its .gz name
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"dataset name must be a plain non-empty name, got {self.name!r}")
        if len(self.class_names) < 2:
            raise ValueError(f"dataset {self.name} needs at least 2 class names")

    @property
    def files(self) -> tuple[FileSpec, FileSpec, FileSpec, FileSpec]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def urls(self, spec: FileSpec) -> list[str]:
        """The download URL of `spec` on each mirror, in mirror order."""
        return [f"{mirror.rstrip('/')}/{spec.gz_name}" for mirror in self.mirrors]


MNIST = DatasetSource(
    name="mnist",
    class_names=tuple(str(digit) for digit in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    train_images=FileSpec(
        TRAIN_IMAGES,
        content_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    train_labels=FileSpec(
        TRAIN_LABELS,
        content_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    test_images=FileSpec(
        TEST_IMAGES,
        content_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    test_labels=FileSpec(
        TEST_LABELS,
        content_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
)

FASHION_MNIST = DatasetSource(
    name="fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    train_images=FileSpec(
        TRAIN_IMAGES,
        gz_sha256="08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    ),
    train_labels=FileSpec(
        TRAIN_LABELS,
        gz_sha256="b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    ),
    test_images=FileSpec(
        TEST_IMAGES,
        gz_sha256="78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    ),
    test_labels=FileSpec(
        TEST_LABELS,
        gz_sha256="42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    ),
)

BUILTIN_DATASETS: dict[str, DatasetSource] = {
    source.name: source for source in (MNIST, FASHION_MNIST)
}
