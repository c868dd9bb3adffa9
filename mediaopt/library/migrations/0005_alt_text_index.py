"""The lint's duplicate alt text count reads an index, not the library, once per image."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mediaopt', '0004_search_indexes'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='mediaasset',
            index=models.Index(fields=['alt_text'], name='asset_alt_text'),
        ),
    ]
