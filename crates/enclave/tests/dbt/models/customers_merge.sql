{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id') }}
select id, name, NVL(region, 'unknown') as region from {{ ref('stg_customers') }}
{% if is_incremental() %} where id >= (select max(id) from {{ this }}) {% endif %}
